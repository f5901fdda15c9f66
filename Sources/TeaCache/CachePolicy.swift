/// Which cache a ``CachedTransformer`` applies. All three keep the same guarantees: one state per cache
/// entry (CFG branch), an explicit run lifecycle, and a ``TeaCacheTrace`` of every decision.
public enum CachePolicy: Codable, Sendable, Equatable {
    /// TeaCache: the modulated input's rescaled relative L1 change, accumulated against a threshold; the
    /// whole block stack is skipped.
    case teaCache(TeaCacheConfiguration)
    /// First-Block Cache: block 0 always runs; its residual's change decides whether the rest runs.
    /// Needs a ``BlockwiseDiffusionTransformer``.
    case firstBlock(FirstBlockCacheConfiguration)
    /// MagCache: calibrated per-step magnitude ratios decide whether the whole block stack runs.
    case magCache(MagCacheConfiguration)

    /// The policy's short name (`teacache`, `first-block`, `magcache`).
    public var name: String {
        switch self {
        case .teaCache: return "teacache"
        case .firstBlock: return "first-block"
        case .magCache: return "magcache"
        }
    }

    /// The policy's threshold.
    public var threshold: Double {
        switch self {
        case .teaCache(let c): return c.threshold
        case .firstBlock(let c): return c.threshold
        case .magCache(let c): return c.threshold
        }
    }

    /// Re-checks the configuration.
    public func validate() throws(TeaCacheError) {
        switch self {
        case .teaCache(let c): try c.validate()
        case .firstBlock(let c): try c.validate()
        case .magCache(let c): try c.validate()
        }
    }
}
