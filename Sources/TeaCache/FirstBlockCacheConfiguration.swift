/// First-Block Cache (ParaAttention; diffusers `FirstBlockCacheConfig`): block 0 runs on every call; when
/// its residual moved little since the last *computed* call, the remaining blocks are skipped and their
/// cached residual is added instead.
///
/// Per call and cache entry (diffusers 0.42.1 `FBCHeadBlockHook`): `r = block₀(h) − h` on stream 0;
/// `d = mean|r − r_c| / mean|r_c|` (Float32 means, as ``RelativeL1``) against `r_c`, the block-0 residual of
/// the last computed call; compute the rest iff there is no `r_c` or `d > threshold` (strict), storing
/// `r_c = r` and the tail residuals `tail = blocks₁…(block₀(h)) − block₀(h)` of every stream; otherwise
/// every stream becomes `block₀(h) + tail`. No step is forced.
public struct FirstBlockCacheConfiguration: Codable, Sendable, Equatable {
    /// diffusers' default threshold.
    public static let defaultThreshold = 0.05

    /// The relative change of block 0's residual below or at which the rest is skipped.
    public private(set) var threshold: Double

    /// A validated configuration.
    /// - Throws: ``TeaCacheError/invalidThreshold(_:)`` for a negative or non-finite threshold.
    public init(threshold: Double = FirstBlockCacheConfiguration.defaultThreshold) throws(TeaCacheError) {
        self.threshold = threshold
        try validate()
    }

    /// Re-checks the threshold.
    public func validate() throws(TeaCacheError) {
        guard threshold.isFinite, threshold >= 0 else { throw .invalidThreshold(threshold) }
    }

    /// Decodes and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        threshold = try c.decode(Double.self, forKey: .threshold)
        do { try validate() } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    private enum CodingKeys: String, CodingKey { case threshold }

    /// The decision of one call: compute when there is no residual of a computed call (`distance` nil)
    /// or the distance exceeds the threshold.
    public func decide(distance: Double?) -> TeaCacheDecision {
        guard let d = distance else {
            return TeaCacheDecision(action: .compute, forced: true, reason: .noPreviousInput, distance: nil, rescaled: nil,
                                    accumulated: nil, accumulatorAfter: 0)
        }
        let skip = !(d > threshold)
        return TeaCacheDecision(action: skip ? .skip : .compute, forced: false, reason: .threshold, distance: d,
                                rescaled: nil, accumulated: d, accumulatorAfter: 0)
    }
}
