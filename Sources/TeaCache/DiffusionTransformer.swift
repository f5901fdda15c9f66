import Tensors

/// The token streams a block stack transforms, and for which TeaCache caches residuals.
///
/// Typically `[image tokens]`; a two-stream model caching both streams: `[video tokens, text tokens]`; a
/// model whose blocks see one joint sequence: `[joint sequence]`.
/// Everything else the blocks need (timestep embedding, rotary tables, masks) lives in the
/// conforming type next to `streams`.
public protocol TransformerState {
    /// The streams entering the block stack (after ``DiffusionTransformer/prepare(_:)``) or leaving it
    /// (after ``DiffusionTransformer/runBlocks(_:)``).
    var streams: [Tensor] { get set }
}

/// A state whose streams and per-sample tensors can be gathered along the batch axis (axis 0 of
/// every stream), enabling per-sample TeaCache decisions.
public protocol BatchSelectableState: TransformerState {
    /// The batch size (axis 0 of every stream).
    var batchSize: Int { get }
    /// The same state restricted to the batch elements `indices`, in that order.
    func selecting(batch indices: [Int]) throws -> Self
}

/// A diffusion transformer split at the two points TeaCache needs: before the first block and after
/// the last one.
///
/// `forward` = ``prepare(_:)`` → ``runBlocks(_:)`` → ``outputHead(_:)``. TeaCache additionally calls
/// ``modulatedInput(_:)`` after `prepare` and may replace `runBlocks` by adding a cached residual to
/// each stream.
public protocol DiffusionTransformer {
    /// Everything one forward call takes (latent, timestep, conditioning).
    associatedtype Input
    /// The pre-block state.
    associatedtype State: TransformerState

    /// Embeddings and everything before the first block; runs on every call, cached or not.
    func prepare(_ input: Input) throws -> State
    /// The tensor TeaCache compares between calls (typically block 0's modulated norm of the input);
    /// must be cheap and must not change `state`.
    func modulatedInput(_ state: State) throws -> Tensor
    /// The block stack: transforms `state.streams` in place (same count and shapes).
    func runBlocks(_ state: inout State) throws
    /// Final norm, projection and unpatchify.
    func outputHead(_ state: State) throws -> Tensor
    /// The cache entry a call of `branch` uses, decided after ``prepare(_:)``.
    ///
    /// The default is `branch` itself: one entry per CFG branch. A model whose reference keys its
    /// cache differently (for example by the length of a joint sequence, which differs between the
    /// conditional and the unconditional call) returns that key; ``CachedTransformer`` then keeps the
    /// previous input, accumulator, residuals and step counter per key, and its trace records the key.
    func cacheKey(for state: State, branch: BranchKey) throws -> BranchKey
}

extension DiffusionTransformer {
    /// One cache entry per branch.
    public func cacheKey(for state: State, branch: BranchKey) throws -> BranchKey { branch }
}

extension DiffusionTransformer {
    /// The uncached forward pass: `prepare → runBlocks → outputHead`.
    public func forward(_ input: Input) throws -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }
}
