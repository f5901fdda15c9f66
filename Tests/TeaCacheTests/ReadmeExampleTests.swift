import Testing
import Tensors
import DiTModels
@testable import TeaCache

// The "Wrapping your own DiT" example of README.md, verbatim (keep the two in sync), so the README's
// code is compiled and run by the tests.

struct SmallDiT: DiffusionTransformer {
    struct Input { var latent: Tensor; var timestepFeatures: Tensor }   // [B, S, C], [B, F]
    struct State: TransformerState {
        var streams: [Tensor]      // [hidden [B, S, D]]: the stream whose residual is cached
        var conditioning: Tensor   // [B, D]
    }

    let embed: Tensor, time: Tensor, ada: Tensor, mlpIn: Tensor, mlpOut: Tensor, head: Tensor

    func prepare(_ input: Input) throws -> State {
        State(streams: [try linear(input.latent, weight: embed)],
              conditioning: silu(try linear(input.timestepFeatures, weight: time)))
    }

    private func modulation(_ s: State) throws -> [Tensor] {     // shift, scale, gate: [B, D] each
        try linear(s.conditioning, weight: ada).chunked(3, axis: 1)
    }

    func modulatedInput(_ s: State) throws -> Tensor {
        let m = try modulation(s)
        return try layerNormModulated(s.streams[0], eps: 1e-6, scale: m[1], shift: m[0])
    }

    func runBlocks(_ s: inout State) throws {
        let m = try modulation(s)
        let y = try linear(linear(modulatedInput(s), weight: mlpIn, activation: .gelu(.tanh)), weight: mlpOut)
        s.streams[0] = try s.streams[0] + y * m[2].unsqueezed(1)
    }

    func outputHead(_ s: State) throws -> Tensor {
        try linear(layerNorm(s.streams[0], eps: 1e-6), weight: head)
    }
}

@Suite struct ReadmeExampleTests {
    static func model() throws -> SmallDiT {
        var g = SeededGenerator(seed: 5)
        func w(_ shape: [Int]) throws -> Tensor {
            try Tensor.randomNormal(shape: shape, standardDeviation: 1 / Float(shape[1]).squareRoot(), using: &g)
        }
        let (c, d, f) = (4, 8, 6)
        return SmallDiT(embed: try w([d, c]), time: try w([d, f]), ada: try w([3 * d, d]),
                        mlpIn: try w([2 * d, d]), mlpOut: try w([d, 2 * d]), head: try w([c, d]))
    }

    /// Smoothly varying timestep features, so consecutive modulated inputs are close (as in a trained model).
    static func makeInput(_ latent: Tensor, _ timestep: Float) throws -> SmallDiT.Input {
        let features = (0..<6).map { Float(_cos(Double(timestep) * Double($0 + 1) * 0.3)) }
        return SmallDiT.Input(latent: latent, timestepFeatures: try Tensor(shape: [1, 6], scalars: features))
    }

    /// The README's caching loop: threshold 0 reproduces the uncached result exactly, and a positive
    /// threshold skips calls (the summary is consistent with the trace).
    @Test func readmeLoopRuns() throws {
        let model = try Self.model()
        var g = SeededGenerator(seed: 6)
        let noise = try Tensor.randomNormal(shape: [1, 5, 4], using: &g)
        let sampler = try FlowMatchEulerSampler(steps: 12, timestepConvention: .sigma)
        let plain = try sampler.sample(from: noise) { latent, timestep, _, _ in
            try model.forward(Self.makeInput(latent, timestep))
        }
        for threshold in [0.0, 0.4] {
            let cached = CachedTransformer(model: model, configuration: try .faithful(.flux, threshold: threshold))
            try cached.beginRun(steps: sampler.steps)
            let latent = try sampler.sample(from: noise) { latent, timestep, branch, _ in
                try cached(Self.makeInput(latent, timestep), branch: branch)
            }
            let summary = try #require(cached.endRun()).summary
            #expect(summary.calls == 12)
            if threshold == 0 {
                #expect(latent == plain)
                #expect(summary.computed == 12)
            } else {
                #expect(summary.computed < 12, "threshold 0.4 should skip some calls of this smooth model")
                #expect(try Tensor.relativeL2(latent, plain) < 0.5)
            }
        }
    }
}

#if canImport(Glibc)
import Glibc
private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
import Foundation
private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
