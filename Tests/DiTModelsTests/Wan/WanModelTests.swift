import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

@Suite("Wan model")
struct WanModelTests {
    static let t2v = WanConfiguration(patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 12, inChannels: 3,
                                      outChannels: 5, textDim: 8, freqDim: 16, ffnDim: 20, numLayers: 1,
                                      crossAttnNorm: false, ropeMaxSeqLen: 8)

    /// The rotary tables equal cos/sin(position · 10000^(−2i/dim)) per axis, each frequency repeated for the
    /// interleaved pair, axes in (frame, row, column) order.
    @Test func rotaryTablesMatchTheClosedForm() throws {
        let rope = WanRotaryEmbedding(configuration: Self.t2v)
        let (cos, sin) = try rope.tables(frames: 2, height: 3, width: 4)
        #expect(cos.shape == [24, 12])
        let dims = [4, 4, 4]
        var token = 0
        var maxErr: Float = 0
        for f in 0..<2 { for h in 0..<3 { for w in 0..<4 {
            let pos = [f, h, w]
            var col = 0
            for (a, dim) in dims.enumerated() {
                for i in 0..<(dim / 2) {
                    let angle = Double(pos[a]) * Foundation.pow(10000, -Double(2 * i) / Double(dim))
                    for k in 0..<2 {
                        maxErr = max(maxErr, abs(cos[token, col + 2 * i + k] - Float(Foundation.cos(angle))))
                        maxErr = max(maxErr, abs(sin[token, col + 2 * i + k] - Float(Foundation.sin(angle))))
                    }
                }
                col += dim
            }
            token += 1
        } } }
        // Both sides round the same Double value to Float: identical up to one ulp.
        #expect(maxErr <= 1e-7)
        #expect(throws: TensorError.self) { try rope.tables(frames: 9, height: 1, width: 1) }
    }

    /// The patch embedding equals a direct Conv3d (kernel = stride = patch) written as loops.
    @Test func patchEmbeddingIsAStridedConvolution() throws {
        let loader = WeightLoader(randomSeed: 5)
        let pe = PatchEmbedding3D(loader.root["patch_embedding"], inChannels: Self.t2v.inChannels,
                                  outChannels: Self.t2v.innerDim, patch: Self.t2v.patch)
        let w = doubles(loader.supplied["patch_embedding.weight"]!)  // [24, 3, 1, 2, 2]
        let bias = doubles(loader.supplied["patch_embedding.bias"]!)
        let x = randomTensor([1, 3, 2, 4, 6], seed: 8)
        let out = try pe(x)
        #expect(out.shape == [1, 2 * 2 * 3, 24])
        var ref = [Double]()
        for f in 0..<2 { for i in 0..<2 { for j in 0..<3 { for o in 0..<24 {
            var s = bias[o]
            for c in 0..<3 { for di in 0..<2 { for dj in 0..<2 {
                s += w[((o * 3 + c) * 2 + di) * 2 + dj] * Double(x[0, c, f, 2 * i + di, 2 * j + dj])
            } } }
            ref.append(s)
        } } } }
        // K = 12 products per output: float32 error ~1e-7 relative.
        #expect(relL2(out, try Tensor(shape: out.shape, scalars: ref.map(Float.init))) < 1e-6)
    }

    @Test func outputShapeAndErrorsOnBadInputs() throws {
        let model = try WanFamily.random(Self.t2v, seed: 1, steps: 50)
        let good = WanInput(hiddenStates: randomTensor([2, 3, 2, 4, 4], seed: 1),
                            timestep: try Tensor(shape: [1], scalars: [500]),
                            encoderHiddenStates: randomTensor([2, 6, 8], seed: 2))
        #expect(try model(good).shape == [2, 5, 2, 4, 4])
        var bad = good
        bad.hiddenStates = randomTensor([2, 3, 2, 5, 4], seed: 1)  // H not divisible by 2
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        bad.encoderHiddenStates = randomTensor([2, 6, 7], seed: 2)
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        bad.timestep = try Tensor(shape: [3], scalars: [1, 2, 3])
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        bad.timestep = try Tensor(shape: [2], scalars: [.nan, 2])
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        var nanLatent = good.hiddenStates
        nanLatent.withUnsafeMutableBufferPointer { $0[5] = .nan }
        bad.hiddenStates = nanLatent
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        bad.encoderHiddenStatesImage = randomTensor([2, 4, 10], seed: 3)  // T2V model given image tokens
        #expect(throws: TensorError.self) { try model(bad) }
        bad = good
        bad.hiddenStates = randomTensor([2, 3, 9, 4, 4], seed: 1)  // 9 frames > rope_max_seq_len 8
        #expect(throws: TensorError.self) { try model(bad) }
    }

    /// A timestep of shape [1] is broadcast over the batch, as diffusers' broadcasting does.
    @Test func scalarTimestepBroadcasts() throws {
        let model = try WanFamily.random(Self.t2v, seed: 1, steps: 50)
        var x = WanInput(hiddenStates: randomTensor([2, 3, 1, 2, 2], seed: 1), timestep: try Tensor(shape: [1], scalars: [300]),
                         encoderHiddenStates: randomTensor([2, 3, 8], seed: 2))
        let a = try model(x)
        x.timestep = try Tensor(shape: [2], scalars: [300, 300])
        #expect(try model(x) == a)
    }

    @Test func missingAndMisshapedWeightsAreListedTogether() throws {
        let loader = WeightLoader(randomSeed: 1)
        _ = try WanFamily.build(Self.t2v, loader).model
        var weights = loader.supplied
        weights["blocks.0.attn1.to_q.weight"] = nil
        weights["proj_out.bias"] = try Tensor(zeros: [3])
        weights["blocks.0.norm2.weight"] = try Tensor(zeros: [24])  // cross_attn_norm is false
        weights["blocks.0.attn2.norm_added_q.weight"] = try Tensor(zeros: [24])  // ignored, as in diffusers
        #expect { try WanFamily.load(Self.t2v, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["blocks.0.attn1.to_q.weight"] && unexpected == ["blocks.0.norm2.weight"]
                && misshaped.map(\.name) == ["proj_out.bias"]
        }
    }

    @Test func randomInitTapersTheTimestepColumns() throws {
        let a = try WanFamily.random(Self.t2v, seed: 9, steps: 12)
        let w = a.conditionEmbedder.timeEmbedder.linear1.weight.float32Tensor()  // [24, 16]
        // Column 0 (frequency 1, cos) is scaled by max(exp(−0.5·(83.3/0.1)²), 0.02) = 0.02; the last
        // frequency 10000^(−7/8) ≈ 3.2e-4 keeps a factor exp(−0.5·(0.265)²) ≈ 0.966.
        let untapered = WeightLoader(randomSeed: 9)
        _ = try WanFamily.build(Self.t2v, untapered).model
        let raw = untapered.supplied["condition_embedder.time_embedder.linear_1.weight"]!
        let f7 = Foundation.pow(10000.0, -7.0 / 8.0)
        let k7 = Float(Foundation.exp(-0.5 * Foundation.pow(1000.0 / 12 * f7 / 0.1, 2)))
        for r in 0..<24 {
            #expect(abs(w[r, 0] - raw[r, 0] * 0.02) <= 1e-7)
            #expect(abs(w[r, 15] - raw[r, 15] * k7) <= 1e-6)
        }
        #expect(throws: ModelLoadError.self) { try WanFamily.random(Self.t2v, seed: 1, steps: 0) }
    }
}
