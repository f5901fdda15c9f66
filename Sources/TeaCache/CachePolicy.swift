/// Which built-in cache a ``CachedTransformer`` applies, as a Codable configuration. Every policy keeps the
/// same guarantees: one state per cache entry (CFG branch), an explicit run lifecycle, and a ``CacheTrace`` of
/// every decision. Each case makes its ``StepCachePolicy`` with ``makeStepPolicy(steps:)``; a policy of your
/// own goes to ``CachedTransformer/init(model:custom:)``.
public enum CachePolicy: Codable, Sendable, Equatable {
    /// TeaCache: the modulated input's rescaled relative L1 change, accumulated against a threshold; the
    /// whole block stack is skipped.
    case teaCache(TeaCacheConfiguration)
    /// First-Block Cache: block 0 always runs; its residual's change decides whether the rest runs.
    /// Needs a ``BlockwiseDiffusionTransformer``.
    case firstBlock(FirstBlockCacheConfiguration)
    /// MagCache: calibrated per-step magnitude ratios decide whether the whole block stack runs.
    case magCache(MagCacheConfiguration)
    /// TaylorSeer: computes on a fixed interval after a warm-up and forecasts the output in between.
    case taylorSeer(TaylorSeerConfiguration)
    /// EasyCache: no coefficients; the stack's measured transformation rate turns the input's change into an
    /// estimate of the output's, accumulated against a threshold.
    case easyCache(EasyCacheConfiguration)
    /// DBCache (cache-dit's Fn/Bn): the front blocks always run and decide; the back blocks always run; the
    /// middle is reused. Needs a ``BlockwiseDiffusionTransformer``.
    case dbCache(DBCacheConfiguration)
    /// Any residual-reusing policy, with skipped calls adding a Taylor forecast of the residual.
    indirect case forecasting(CachePolicy, ResidualForecast)

    /// The policy's short name (`teacache`, `first-block`, `magcache`, `taylorseer`, `easycache`, `dbcache`;
    /// a forecasting policy adds `+forecast` and the order).
    public var name: String {
        switch self {
        case .teaCache: return "teacache"
        case .firstBlock: return "first-block"
        case .magCache: return "magcache"
        case .taylorSeer: return "taylorseer"
        case .easyCache: return "easycache"
        case .dbCache: return "dbcache"
        case .forecasting(let base, let f): return "\(base.name)+forecast\(f.order)"
        }
    }

    /// The policy's threshold (0 for TaylorSeer, whose schedule is fixed).
    public var threshold: Double {
        switch self {
        case .teaCache(let c): return c.threshold
        case .firstBlock(let c): return c.threshold
        case .magCache(let c): return c.threshold
        case .taylorSeer: return 0
        case .easyCache(let c): return c.threshold
        case .dbCache(let c): return c.threshold
        case .forecasting(let base, _): return base.threshold
        }
    }

    /// Re-checks the configuration.
    public func validate() throws(CacheError) {
        switch self {
        case .teaCache(let c): try c.validate()
        case .firstBlock(let c): try c.validate()
        case .magCache(let c): try c.validate()
        case .taylorSeer(let c): try c.validate()
        case .easyCache(let c): try c.validate()
        case .dbCache(let c): try c.validate()
        case .forecasting(let base, let f):
            try base.validate()
            try f.validate()
            switch base {
            case .taylorSeer, .forecasting: throw .policyUnsupported("\(base.name) has no stored residual to forecast")
            case .teaCache(let c) where c.perSample: throw .policyUnsupported("forecast residuals need whole-batch decisions")
            default: break
            }
        }
    }

    /// The policy for a run of `steps` steps per branch, with an empty state.
    /// - Throws: ``CacheError/invalidStepCount(_:)``, ``CacheError/replayMismatch(_:)`` (TeaCache replaying
    ///   a schedule of another step count), or the configuration's validation error.
    public func makeStepPolicy(steps: Int) throws(CacheError) -> any StepCachePolicy {
        switch self {
        case .teaCache(let c): return try TeaCachePolicy(configuration: c, steps: steps)
        case .magCache(let c): return try MagCachePolicy(configuration: c, steps: steps)
        case .firstBlock(let c): return try Self.started(FirstBlockCachePolicy(configuration: c), steps: steps)
        case .taylorSeer(let c): return try Self.started(TaylorSeerPolicy(configuration: c), steps: steps)
        case .easyCache(let c): return try Self.started(EasyCachePolicy(configuration: c), steps: steps)
        case .dbCache(let c): return try Self.started(DBCachePolicy(configuration: c), steps: steps)
        case .forecasting(let base, let f):
            try validate()
            return try ForecastingPolicy(base: try base.makeStepPolicy(steps: steps), forecast: f)
        }
    }

    private static func started<P: StepCachePolicy>(_ policy: P, steps: Int) throws(CacheError) -> P {
        var p = policy
        try p.beginRun(steps: steps)
        return p
    }
}
