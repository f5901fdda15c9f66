import TeaCache
import Tensors

/// Which tensor TeaCache4Wan2.1 compares between calls, and which steps it always computes.
public enum WanTeaCacheMode: String, Sendable, Codable, CaseIterable {
    /// The script's default: compares `temb` (the original's `e`, `[B, D]`); the first and the last
    /// step of each branch are computed (`ret_steps = 2`, `cutoff_steps = 2N − 2` over 2N calls).
    case standard
    /// `--use_ret_steps`: compares `timestep_proj` (the original's `e0`, `[B, 6, D]`); the first 5 steps
    /// of each branch are computed, the last step is **not** forced (`ret_steps = 10`, `cutoff_steps = 2N`).
    case retention

    /// The forced-compute rule of this mode, in per-branch steps. The reference keys one counter over
    /// all 2N calls (cond even, uncond odd) and forces `counter < ret_steps` or `counter >= cutoff_steps`;
    /// per branch that is steps `< ret_steps / 2` and `>= cutoff_steps / 2` (``schedule(retSteps:cutoffSteps:steps:)``).
    public var schedule: TeaCacheSchedule {
        switch self {
        case .standard: return TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: true)
        case .retention: return TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false)
        }
    }

    /// The script's `ret_steps` and `cutoff_steps` over 2N calls: 2 and 2N − 2 (standard), 10 and 2N
    /// (retention).
    public func referenceCounterBounds(steps n: Int) -> (retSteps: Int, cutoffSteps: Int) {
        self == .retention ? (10, 2 * n) : (2, 2 * n - 2)
    }

    /// The per-branch schedule of the reference's rule with any `ret_steps` and `cutoff_steps` over 2N
    /// calls (both even): this mode's ``schedule`` for the script's values, the same rule otherwise.
    /// - Throws: `CacheError/invalidSchedule(_:)` for odd bounds (cond and uncond calls alternate).
    public func schedule(retSteps: Int, cutoffSteps: Int, steps n: Int) throws(CacheError) -> TeaCacheSchedule {
        guard retSteps % 2 == 0, cutoffSteps % 2 == 0, retSteps >= 0, cutoffSteps >= 0 else {
            throw .invalidSchedule("ret_steps \(retSteps) and cutoff_steps \(cutoffSteps) must be even and >= 0 "
                                   + "(cond and uncond calls alternate on one counter)")
        }
        let script = referenceCounterBounds(steps: n)
        if (retSteps, cutoffSteps) == (script.retSteps, script.cutoffSteps) { return schedule }
        return TeaCacheSchedule(retainFirstSteps: retSteps / 2, forceLastStep: false, cutoffStep: cutoffSteps / 2)
    }
}

/// The Wan2.1 checkpoints TeaCache4Wan2.1 has coefficients for (chosen there by a substring of
/// `--ckpt_dir`).
public enum WanVariant: String, Sendable, Codable, CaseIterable {
    /// Text-to-video, 1.3B parameters.
    case t2v1_3B = "t2v-1.3B"
    /// Text-to-video, 14B parameters.
    case t2v14B = "t2v-14B"
    /// Image-to-video at 480P.
    case i2v480P = "i2v-480P"
    /// Image-to-video at 720P.
    case i2v720P = "i2v-720P"
}

extension WanState: BatchSelectableState {
    /// `[video tokens]`: the only stream TeaCache caches for Wan (text and image features enter through
    /// cross-attention and are recomputed on every call). Assigning an array of another length leaves
    /// the state unchanged (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [tokens] }
        set { if newValue.count == 1 { tokens = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (rotary tables are shared).
    public func selecting(batch indices: [Int]) throws -> WanState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.blocks.timestepProjection = try blocks.timestepProjection.gatheringRows(indices)
        s.blocks.context = try blocks.context.gatheringRows(indices)
        s.blocks.image = try blocks.image.map { t throws(TensorError) in try t.gatheringRows(indices) }
        return s
    }
}

/// ``WanTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - streams: `[video tokens after the patch embedding]`; residual = tokens after the last block minus
///   tokens after the patch embedding (before the output norm), as TeaCache4Wan2.1 caches `x − ori_x`.
/// - modulated input: `temb` in ``WanTeaCacheMode/standard`` mode, `timestep_proj` `[B, 6, D]` in
///   ``WanTeaCacheMode/retention`` mode (``WanTransformer/teaCacheMode``). Both depend only on the timestep.
/// - CFG: the reference keys its two states on the parity of a shared call counter (cond = even,
///   uncond = odd). Here each branch is a ``BranchKey`` of ``CachedTransformer`` (`.cond`, `.uncond`)
///   with its own previous input, accumulator, residual and step counter, which gives the same
///   decisions for the cond-then-uncond call order without depending on it.
extension WanTransformer: DiffusionTransformer {
    public typealias Input = WanInput
    public typealias State = WanState

    /// `temb` `[B, D]` (standard) or `timestep_proj` `[B, 6, D]` (retention).
    public func modulatedInput(_ state: WanState) throws -> Tensor {
        switch teaCacheMode {
        case .standard: return state.temb
        case .retention: return state.blocks.timestepProjection
        }
    }

    /// A TeaCache configuration for this model's mode: the variant's reference coefficients and the
    /// mode's schedule, at `threshold` (default: the preset's, 0.2).
    public func teaCacheConfiguration(variant: WanVariant, threshold: Double? = nil) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration.faithful(Self.preset(variant, teaCacheMode), threshold: threshold)
    }

    /// The reference coefficients of `variant` in `mode`.
    public static func preset(_ variant: WanVariant, _ mode: WanTeaCacheMode) -> TeaCachePreset {
        switch (variant, mode) {
        case (.t2v1_3B, .standard): return .wan21T2V1_3B
        case (.t2v14B, .standard): return .wan21T2V14B
        case (.i2v480P, .standard): return .wan21I2V480P
        case (.i2v720P, .standard): return .wan21I2V720P
        case (.t2v1_3B, .retention): return .wan21T2V1_3BRet
        case (.t2v14B, .retention): return .wan21T2V14BRet
        case (.i2v480P, .retention): return .wan21I2V480PRet
        case (.i2v720P, .retention): return .wan21I2V720PRet
        }
    }

    /// The threshold each README command line uses for `variant` (T2V 1.3B 0.08, T2V 14B 0.2,
    /// I2V 480P 0.26, I2V 720P 0.3; the ret-steps example uses 0.3 for T2V 14B). The script's own
    /// default is 0.2 for all.
    public static func readmeThreshold(_ variant: WanVariant, _ mode: WanTeaCacheMode) -> Double {
        switch (variant, mode) {
        case (.t2v1_3B, _): return 0.08
        case (.t2v14B, .standard): return 0.2
        case (.t2v14B, .retention): return 0.3
        case (.i2v480P, _): return 0.26
        case (.i2v720P, _): return 0.3
        }
    }
}

/// Wan block by block (First-Block Cache).
extension WanTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: WanState) -> Int { blocks.count }

    public func runBlock(_ index: Int, _ state: inout WanState) throws {
        guard blocks.indices.contains(index) else {
            throw TensorError.invalidArgument(operation: "Wan block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        state.tokens = try blocks[index](state.tokens, state.blocks)
    }
}

/// A latency table of the TeaCache4Wan2.1 README (spec §3), verbatim: the uncached time and the time at
/// each threshold, in seconds.
public struct WanPublishedLatency: Sendable, Equatable {
    /// Which README table.
    public var table: String
    /// The checkpoint.
    public var variant: WanVariant
    /// The modulated-input mode.
    public var mode: WanTeaCacheMode
    /// Seconds without TeaCache.
    public var baselineSeconds: Double
    /// (threshold, seconds) pairs.
    public var runs: [(threshold: Double, seconds: Double)]

    /// `baseline / seconds` per threshold.
    public var speedups: [(threshold: Double, speedup: Double)] {
        runs.map { ($0.threshold, baselineSeconds / $0.seconds) }
    }

    public static func == (a: Self, b: Self) -> Bool {
        a.table == b.table && a.variant == b.variant && a.mode == b.mode && a.baselineSeconds == b.baselineSeconds
            && a.runs.map(\.threshold) == b.runs.map(\.threshold) && a.runs.map(\.seconds) == b.runs.map(\.seconds)
    }

    /// Every Wan2.1 latency table of the README: "Inference Latency Comparisons on a Single A800"
    /// (standard mode) and the `use_ret_steps` comparison (both modes, GPU not stated).
    public static let all: [WanPublishedLatency] = {
        let a800 = "Inference Latency Comparisons on a Single A800"
        let ret = "use_ret_steps table"
        return [
            .init(table: a800, variant: .t2v1_3B, mode: .standard, baselineSeconds: 175,
                  runs: [(0.05, 117), (0.07, 110), (0.08, 88)]),
            .init(table: a800, variant: .t2v14B, mode: .standard, baselineSeconds: 55 * 60,
                  runs: [(0.14, 38 * 60), (0.15, 30 * 60), (0.2, 27 * 60)]),
            .init(table: a800, variant: .i2v480P, mode: .standard, baselineSeconds: 735,
                  runs: [(0.13, 464), (0.19, 372), (0.26, 300)]),
            .init(table: a800, variant: .i2v720P, mode: .standard, baselineSeconds: 29 * 60,
                  runs: [(0.18, 17 * 60), (0.2, 15 * 60), (0.3, 12 * 60)]),
            .init(table: ret, variant: .t2v1_3B, mode: .standard, baselineSeconds: 97, runs: [(0.05, 64), (0.08, 49)]),
            .init(table: ret, variant: .t2v1_3B, mode: .retention, baselineSeconds: 97, runs: [(0.05, 61), (0.10, 41)]),
            .init(table: ret, variant: .t2v14B, mode: .standard, baselineSeconds: 1829, runs: [(0.14, 1234), (0.20, 909)]),
            .init(table: ret, variant: .t2v14B, mode: .retention, baselineSeconds: 1829, runs: [(0.10, 915), (0.20, 578)]),
            .init(table: ret, variant: .i2v480P, mode: .standard, baselineSeconds: 385, runs: [(0.13, 241), (0.26, 156)]),
            .init(table: ret, variant: .i2v480P, mode: .retention, baselineSeconds: 385, runs: [(0.20, 212), (0.30, 164)]),
            .init(table: ret, variant: .i2v720P, mode: .standard, baselineSeconds: 903, runs: [(0.20, 476), (0.30, 363)]),
            .init(table: ret, variant: .i2v720P, mode: .retention, baselineSeconds: 903, runs: [(0.20, 430), (0.30, 340)]),
        ]
    }()
}

extension WanTransformer: MemoryBudgeted {}
