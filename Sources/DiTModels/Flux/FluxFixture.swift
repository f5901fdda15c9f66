import Foundation
import TeaCache
import Tensors

/// How `teacache verify` feeds a FLUX or TangoFlux fixture folder to ``FluxTransformer``.
///
/// Both families use diffusers' `FluxTransformer2DModel`; a folder without a `family` field is named
/// `flux` when its config embeds guidance and `tangoflux` otherwise. Arguments are diffusers' forward
/// arguments: `hidden_states`, `encoder_hidden_states`, `pooled_projections`, `timestep`, `img_ids`,
/// `txt_ids` and, with guidance, `guidance`.
public enum FluxFixture: FixtureFamily {
    public typealias Model = FluxTransformer

    public static let familyNames = ["flux", "tangoflux"]
    public static let classNames = [FluxConfiguration.className]

    public static func familyName(className: String, config: Data) -> String? {
        guard classNames.contains(className),
              let c = try? FluxConfiguration.parse(config, className: className) else { return nil }
        return c.guidanceEmbeds ? "flux" : "tangoflux"
    }

    public static func loadModel(className: String, config: Data, weights: WeightLoader) throws -> FluxTransformer {
        try FluxTransformer(configuration: FluxConfiguration.parse(config, className: className), loader: weights)
    }

    public static func forwardInput(_ a: FixtureArguments) throws -> FluxInputs {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments) throws -> FluxInputs {
        guard latent.rank >= 1 else { throw VerifyError.unsupported("the latent must have a batch axis, got \(latent.shape)") }
        return try inputs(hiddenStates: latent, timestep: Tensor(shape: [latent.shape[0]], repeating: timestep), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> FluxInputs {
        FluxInputs(hiddenStates: hiddenStates, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                   pooledProjections: try a.tensor("pooled_projections"), timestep: timestep,
                   imageIDs: try a.tensor("img_ids"), textIDs: try a.tensor("txt_ids"),
                   guidance: a.optionalTensor("guidance"))
    }
}
