import TeaCache
import Tensors

/// How Lumina2's TeaCache entries are keyed (``Lumina2Transformer/teaCacheKeying``).
///
/// - ``branch`` (the default) keeps one entry per CFG branch, like every other family: with or without
///   CFG, and whatever the caption lengths, each branch has its own previous input, accumulator,
///   residual and step counter, and the standard schedule applies per branch.
/// - ``sequenceLength`` is TeaCache4Lumina2's own keying: one entry per joint sequence length
///   `max_seq_len`. Together with `TeaCacheSchedule/lumina2Reference` (its shared counter, advanced
///   only by calls of another length than the first call's) it reproduces the reference exactly —
///   including its quirk that without CFG, or with cond and uncond captions of equal length, the
///   counter never advances and nothing is ever skipped. ``Lumina2Family`` uses it for the fixtures.
public enum Lumina2TeaCacheKeying: String, Sendable, Codable, CaseIterable {
    /// One entry per CFG branch (the library's default).
    case branch
    /// One entry per joint sequence length (the reference's).
    case sequenceLength
}

extension TeaCacheSchedule {
    /// TeaCache4Lumina2's counter rule: the standard forced steps (first and last) read one counter
    /// shared by all entries, advanced after each call whose entry differs from the first one seen.
    /// Use it with ``Lumina2TeaCacheKeying/sequenceLength`` to reproduce the reference (faithful mode).
    public static let lumina2Reference = TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst)
}

/// Lumina2's TeaCache state: the padded joint caption + image sequence is the one cached stream.
extension Lumina2State: BatchSelectableState {
    /// `[joint sequence]` `[B, P, D]`. Assigning an array of another length leaves the state unchanged.
    public var streams: [Tensor] {
        get { [joint] }
        set { if newValue.count == 1 { joint = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { joint.shape[0] }

    /// The state of the batch elements `indices`. The joint sequence keeps its padded length, and the
    /// key mask is kept (or made) whenever a selected sample is shorter than it, so a padded row is never
    /// attended to.
    public func selecting(batch indices: [Int]) throws -> Lumina2State {
        var s = self
        s.joint = try joint.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.rope = try rope.selecting(indices)
        s.captionLengths = indices.map { captionLengths[$0] }
        s.rope.uniform = Set(s.captionLengths).count <= 1
        s.keyMask = try keyMask?.gatheringRows(indices)
        return s
    }
}

/// Lumina2 as a TeaCache ``DiffusionTransformer`` (TeaCache4Lumina2): `prepare` runs the embeddings and
/// both refiners and builds the joint sequence (on every call, skipped or not), the modulated input is
/// `layers[0].norm1(joint, temb)[0]`, `runBlocks` runs `layers` (the cached residual is the joint
/// sequence's change, padding included), `outputHead` takes the image rows through `norm_out`.
extension Lumina2Transformer: DiffusionTransformer {
    public typealias Input = Lumina2Input
    public typealias State = Lumina2State

    /// The branch (``Lumina2TeaCacheKeying/branch``), or `max_seq_len` (``Lumina2TeaCacheKeying/sequenceLength``).
    public func cacheKey(for state: Lumina2State, branch: BranchKey) throws -> BranchKey {
        switch teaCacheKeying {
        case .branch: return branch
        case .sequenceLength: return BranchKey(state.maxSequenceLength)
        }
    }
}

/// Lumina2 block by block (First-Block Cache): `layers` (the refiners run in `prepare`), nothing after
/// them (`norm_out` lies outside the cached span, as diffusers' hooks see it).
extension Lumina2Transformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: Lumina2State) -> Int { layers.count }
    public func runBlock(_ index: Int, _ state: inout Lumina2State) throws {
        state.joint = try layers[index](state.joint, rope: state.rope, keyMask: state.keyMask, temb: state.temb)
    }
}

extension Lumina2Transformer: MemoryBudgeted {}
