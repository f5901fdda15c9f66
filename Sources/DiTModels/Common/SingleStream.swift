import Tensors

extension Array where Element == Tensor {
    /// The one tensor of an assignment to the `streams` of a state with a single cached stream.
    ///
    /// `CachedTransformer` assigns only arrays of the count and shapes it read from the state, so any
    /// other count is a programming error, not an input to recover from.
    func soleStream(of model: String) -> Tensor {
        precondition(count == 1, "\(model) has one cached stream, got \(count)")
        return self[0]
    }
}
