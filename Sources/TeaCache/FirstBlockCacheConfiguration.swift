import Tensors

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
    /// - Throws: ``CacheError/invalidThreshold(_:)`` for a negative or non-finite threshold.
    public init(threshold: Double = FirstBlockCacheConfiguration.defaultThreshold) throws(CacheError) {
        self.threshold = threshold
        try validate()
    }

    /// diffusers' default configuration (threshold ``defaultThreshold``).
    public static let diffusersDefault = FirstBlockCacheConfiguration(validThreshold: defaultThreshold)

    private init(validThreshold: Double) { threshold = validThreshold }

    /// Re-checks the threshold.
    public func validate() throws(CacheError) {
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
    public func decide(distance: Double?) -> CacheDecision {
        guard let d = distance else { return .forcedCompute(.noPreviousInput, details: .firstBlock) }
        let skip = !(d > threshold)
        return CacheDecision(action: skip ? .skip : .compute, forced: false, reason: .threshold, distance: d,
                             details: .firstBlock)
    }
}

/// First-Block Cache as a ``StepCachePolicy`` (see ``FirstBlockCacheConfiguration``): block 0 is the head
/// block; the region a skip replaces is every later block; the branch keeps block 0's residual of its last
/// computed call.
public struct FirstBlockCachePolicy: StepCachePolicy {
    /// The configuration.
    public let configuration: FirstBlockCacheConfiguration
    private var headResiduals: [BranchKey: Tensor] = [:]

    /// A fresh policy.
    public init(configuration: FirstBlockCacheConfiguration) { self.configuration = configuration }

    /// `first-block`.
    public var name: String { "first-block" }
    /// Block 0 runs before the decision.
    public var blockSplit: CacheBlockSplit { CacheBlockSplit(head: 1, tail: 0) }

    /// Forgets every branch.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        try configuration.validate()
        headResiduals = [:]
    }

    /// Block 0's residual against the branch's last computed one (no distance without a stored tail residual).
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        guard let r = call.headResidual else { throw .policyUnsupported("First-Block Cache needs block 0's residual") }
        let distance = try headResiduals[call.branch].map { p throws(CacheError) in try RelativeL1.distance(r, previous: p) }
        if call.mustCompute { return [.forcedCompute(.stepMask, details: .firstBlock)] }
        return [configuration.decide(distance: call.hasStoredResidual ? distance : nil)]
    }

    /// Keeps block 0's residual of this computed call.
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        headResiduals[call.branch] = call.headResidual
    }

    /// Forgets the branch's block-0 residual.
    public mutating func reset(_ branch: BranchKey, batch: Int) { headResiduals[branch] = nil }
}
