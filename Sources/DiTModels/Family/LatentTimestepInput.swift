import TeaCache
import Tensors

/// A model input whose sampling calls differ only in the latent and the timestep (every built-in
/// family's input: `hidden_states` and `timestep` as diffusers names them).
public protocol LatentTimestepInput {
    /// The latent of the call.
    var hiddenStates: Tensor { get set }
    /// The timestep of the call, one value per batch row `[B]`.
    var timestep: Tensor { get set }
}

extension SamplingInputs where Input: LatentTimestepInput {
    /// A sampling run starting from `cond.hiddenStates`: each call is a copy of `cond` (of `uncond` on
    /// the unconditional CFG branch, when given) with the call's latent and the timestep repeated over the
    /// `batch` rows; `adjust`, when given, then sets what else depends on the timestep value.
    public init(cond: Input, uncond: Input? = nil, batch: Int,
                adjust: ((_ input: inout Input, _ timestep: Float) throws -> Void)? = nil) {
        self.init(latent: cond.hiddenStates) { latent, t, branch in
            var x = branch == .uncond ? (uncond ?? cond) : cond
            x.hiddenStates = latent
            x.timestep = try Tensor(shape: [batch], repeating: t)
            try adjust?(&x, t)
            return x
        }
    }
}
