import Foundation
import Testing
import Tensors
import DiTModels
import TeaCache

/// The "Loading a diffusers model" example of README.md (keep the two in sync), run on a diffusers-style
/// `transformer/` folder made from the flux fixture (config.json + diffusion_pytorch_model.safetensors).
@Suite struct ReadmeLoadingExampleTests {
    /// The README's code, with the folder, the step count and the conditioning passed in.
    static func readmeExample(folder: URL, steps: Int, inputs: FluxInput) throws -> (Tensor, TeaCacheTrace?) {
        let configuration = try FluxConfiguration.load(folder.appendingPathComponent("config.json"))
        let model = try FluxTransformer(configuration: configuration, weightsAt: folder)   // file, index JSON or folder
        let cached = CachedTransformer(model: model, configuration: try .faithful(.flux, threshold: 0.4))
        let sampler = try FlowMatchEulerSampler(steps: steps, timestepConvention: .sigma)
        try cached.beginRun(steps: sampler.steps)
        let latent = try sampler.sample(from: inputs.hiddenStates) { latent, timestep, branch, _ in
            var call = inputs                       // text embeddings, pooled projection, ids, guidance
            call.hiddenStates = latent
            call.timestep = try Tensor(shape: [1], repeating: timestep)
            return try cached(call, branch: branch)
        }
        return (latent, cached.endRun())
    }

    @Test func readmeLoadingExampleRunsOnATransformerFolder() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("readme-flux-\(UUID().uuidString)/transformer")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder.deletingLastPathComponent()) }
        let fixture = Fixtures.folder("flux")
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("config.json"),
                                         to: folder.appendingPathComponent("config.json"))
        try FileManager.default.copyItem(at: fixture.appendingPathComponent("model.safetensors"),
                                         to: folder.appendingPathComponent("diffusion_pytorch_model.safetensors"))

        let configuration = try FluxConfiguration.load(folder.appendingPathComponent("config.json"))
        let inputs = try FluxTransformer.randomInputs(configuration: configuration, batch: 1, latentHeight: 8,
                                                      latentWidth: 8, textTokens: 5, seed: 3)
        let steps = 6
        let (latent, trace) = try Self.readmeExample(folder: folder, steps: steps, inputs: inputs)
        #expect(latent.shape == inputs.hiddenStates.shape)
        #expect(trace?.summary.calls == steps)

        // The same loop with plain forwards of a model loaded from the file itself: at threshold 0.4 the
        // computed calls must be exact, so with every call computed the latents are identical.
        let model = try FluxTransformer(configuration: configuration,
                                        weightsAt: fixture.appendingPathComponent("model.safetensors"))
        let sampler = try FlowMatchEulerSampler(steps: steps, timestepConvention: .sigma)
        let uncached = try sampler.sample(from: inputs.hiddenStates) { latent, timestep, _, _ in
            var call = inputs
            call.hiddenStates = latent
            call.timestep = try Tensor(shape: [1], repeating: timestep)
            return try model.forward(call)
        }
        if trace?.summary.skipped == 0 {
            #expect(latent == uncached)
        } else {
            #expect(try Tensor.relativeL2(latent, uncached) < 0.5)
            #expect(latent != uncached)
        }
    }
}
