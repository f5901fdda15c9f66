import Tensors

/// A ``DiffusionTransformer`` whose block stack can be run one block at a time — what block-granular
/// cache policies (``FirstBlockCacheConfiguration``) need.
///
/// `runBlocks` becomes the loop over ``runBlock(_:_:)`` followed by ``finishBlocks(_:)``. After
/// ``runBlock(_:_:)`` returns, the state's
/// ``TransformerState/streams`` must read the streams' current values, with the prepared count and
/// shapes (a model whose later blocks work on a joined sequence splits it when the streams are read).
///
/// A model that only adopts ``DiffusionTransformer`` keeps working with TeaCache and MagCache; only the
/// first-block policy needs this refinement.
public protocol BlockwiseDiffusionTransformer: DiffusionTransformer {
    /// The number of blocks of the stack for `state` (usually fixed by the configuration).
    func blockCount(_ state: State) -> Int
    /// Runs block `index` (`0 ..< blockCount(state)`, in order) on the state in place.
    func runBlock(_ index: Int, _ state: inout State) throws
    /// What `runBlocks` does after the last block but is not a block (a model whose TeaCache residual
    /// includes the output norm applies that norm here); runs after a First-Block Cache skip too. Default:
    /// nothing.
    func finishBlocks(_ state: inout State) throws
}

extension BlockwiseDiffusionTransformer {
    /// Every block in order, then ``finishBlocks(_:)``.
    public func runBlocks(_ state: inout State) throws {
        for i in 0..<blockCount(state) { try runBlock(i, &state) }
        try finishBlocks(&state)
    }

    /// Nothing.
    public func finishBlocks(_ state: inout State) throws {}
}
