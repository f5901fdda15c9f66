import TeaCache
import Tensors

/// Reproduces, in isolation, the work a skipped TeaCache call does beyond `prepare` and the output
/// head: compute the modulated input, its relative L1 distance to the previous one, one policy
/// decision (polynomial, accumulator, comparison), and adding the cached residual to every stream.
///
/// Used by the demo and the benchmark package to report the decision overhead as a fraction of one
/// forward. The residual is zero-valued (adding it costs the same as adding a real one).
public struct DecisionOverheadProbe<Model: DiffusionTransformer> {
    private let model: Model
    private let state: Model.State
    private let previousModulated: Tensor
    private let residuals: [Tensor]
    private let policy: TeaCachePolicy

    /// Prepares the state of `current` and the modulated input of `previous`.
    /// - Throws: whatever the model throws, or a `CacheError` for an invalid configuration.
    public init(model: Model, current: Model.Input, previous: Model.Input,
                configuration: TeaCacheConfiguration, steps: Int) throws {
        self.model = model
        state = try model.prepare(current)
        previousModulated = try model.modulatedInput(try model.prepare(previous))
        residuals = try state.streams.map { try Tensor(zeros: $0.shape) }
        policy = try TeaCachePolicy(configuration: configuration, steps: max(steps, 3))
    }

    /// One skip-path extra: returns the sum of the decision's distance and the first stream's size so
    /// the work cannot be optimised away.
    public func skippedCallExtra() throws -> Double {
        let m = try model.modulatedInput(state)
        let d = try RelativeL1.distance(m, previous: previousModulated)
        var p = policy
        let decision = try p.decide(step: 1, branch: .cond, distance: d)
        var s = state
        s.streams = try zip(state.streams, residuals).map { try $0 + $1 }
        return (decision.accumulated ?? 0) + Double(s.streams.first?.count ?? 0)
    }
}
