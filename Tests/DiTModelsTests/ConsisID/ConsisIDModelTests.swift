import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// ConsisID's own layers and checks on random models: the perceiver cross-attention against a naive
/// loop, the backbone being CogVideoX's, an identity shared by the batch, and typed errors for bad
/// configurations, weights and inputs.
@Suite("ConsisID model")
struct ConsisIDModelTests {
    static func randomModel(_ c: ConsisIDConfiguration, seed: UInt64 = 3) throws -> (ConsisIDTransformer, [String: Tensor]) {
        let loader = WeightLoader(randomSeed: seed)
        let model = try ConsisIDFamily.build(c, loader).model
        return (model, loader.supplied)
    }

    /// Naive perceiver cross-attention in Double: `to_out(softmax(q·kᵀ/√d) v)` with
    /// `q = to_q(LN₂(x))`, `[k, v] = to_kv(LN₁(face))`, per batch row and head.
    static func naiveCrossAttention(face: Tensor, x: Tensor, weights w: [String: Tensor], prefix p: String,
                                    heads: Int, headDim: Int) throws -> [Double] {
        func d(_ name: String) throws -> [Double] { doubles(try #require(w[p + name])) }
        let (b, s, dim) = (x.shape[0], x.shape[1], x.shape[2]), (q, kvDim) = (face.shape[1], face.shape[2])
        let inner = heads * headDim
        let c = naiveLayerNorm(doubles(face), dim: kvDim, weight: try d("norm1.weight"), bias: try d("norm1.bias"), eps: 1e-5)
        let h = naiveLayerNorm(doubles(x), dim: dim, weight: try d("norm2.weight"), bias: try d("norm2.bias"), eps: 1e-5)
        let query = naiveLinear(h, inFeatures: dim, weight: try d("to_q.weight"), bias: nil)
        let kv = naiveLinear(c, inFeatures: kvDim, weight: try d("to_kv.weight"), bias: nil)
        var attended = [Double](repeating: 0, count: b * s * inner)
        for bi in 0..<b {
            let fb = face.shape[0] == 1 ? 0 : bi
            for head in 0..<heads {
                for i in 0..<s {
                    let qRow = (bi * s + i) * inner + head * headDim
                    var scores = (0..<q).map { j -> Double in
                        let kRow = (fb * q + j) * 2 * inner + head * headDim
                        return (0..<headDim).map { query[qRow + $0] * kv[kRow + $0] }.reduce(0, +) / Double(headDim).squareRoot()
                    }
                    let m = scores.max() ?? 0
                    scores = scores.map { exp($0 - m) }
                    let z = scores.reduce(0, +)
                    for e in 0..<headDim {
                        attended[qRow + e] = (0..<q).map { j in scores[j] / z * kv[(fb * q + j) * 2 * inner + inner + head * headDim + e] }
                            .reduce(0, +)
                    }
                }
            }
        }
        return naiveLinear(attended, inFeatures: inner, weight: try d("to_out.weight"), bias: nil)
    }

    /// A block followed by a cross-attention adds `local_face_scale ·` the naive cross-attention to the
    /// backbone block's video tokens (tolerance 1e-5 relative: float32 against Double); a block without one
    /// is exactly the backbone block. Both with a face of batch 1 serving a batch of 2.
    @Test(arguments: [1, 2])
    func crossAttentionFollowsEveryIntervalthBlock(_ idBatch: Int) throws {
        let c = tinyConsisID(layers: 4, interval: 2, scale: 0.7)
        let (model, weights) = try Self.randomModel(c)
        var state = try model.prepare(consisIDInput(c, batch: 2, idBatch: idBatch))
        let face = try #require(state.faceEmbedding)
        #expect(face.shape == [idBatch, c.lfeNumQueries, c.lfeOutputDim])
        for i in 0..<4 {
            var plain = state.backbone
            try model.backbone.runBlock(i, &plain)
            try model.runBlock(i, &state)
            #expect(state.backbone.text == plain.text)
            if i % 2 == 1 {
                #expect(state.backbone.video == plain.video, "block \(i)")
                continue
            }
            let ca = try Self.naiveCrossAttention(face: face, x: plain.video, weights: weights,
                                                  prefix: "perceiver_cross_attention.\(i / 2).", heads: 2, headDim: 8)
            let expected = zip(doubles(plain.video), ca).map { $0 + 0.7 * $1 }
            let got = doubles(state.backbone.video)
            let err = zip(got, expected).map { ($0 - $1) * ($0 - $1) }.reduce(0, +).squareRoot()
                / expected.map { $0 * $0 }.reduce(0, +).squareRoot()
            #expect(err < 1e-5, "block \(i): rel L2 \(err)")
        }
    }

    /// Without identity layers ConsisID is CogVideoX: the same weights give the same output, bit for bit,
    /// and the identity arguments are ignored (as diffusers ignores them).
    @Test func withoutIdentityLayersItIsCogVideoX() throws {
        let c = tinyConsisID(face: false)
        let (model, weights) = try Self.randomModel(c)
        #expect(!weights.keys.contains { $0.hasPrefix("local_facial_extractor") || $0.hasPrefix("perceiver") })
        let cog = try CogVideoXFamily.load(c.backbone, tensors: weights)
        let x = consisIDInput(c)
        let reference = try cog(CogVideoXInput(hiddenStates: x.hiddenStates, encoderHiddenStates: x.encoderHiddenStates,
                                               timestep: x.timestep))
        #expect(try model(x) == reference)
        var bare = x
        (bare.idCond, bare.idVitHidden) = (nil, nil)
        #expect(try model(bare) == reference)
        #expect(c.forwardFLOPs(batch: 1, videoTokens: 32, textTokens: 5, vitTokens: 3, faceBatch: 1)
                == c.backbone.forwardFLOPs(batch: 1, videoTokens: 32, textTokens: 5))
    }

    /// One identity shared by a batch of 2 (as the pipeline passes it with batched CFG) gives the output
    /// of the same identity repeated per row; batch rows stay independent.
    @Test func anIdentityOfBatchOneServesTheBatch() throws {
        let c = tinyConsisID()
        let (model, _) = try Self.randomModel(c)
        let shared = consisIDInput(c, batch: 2, idBatch: 1)
        var repeated = shared
        repeated.idCond = try shared.idCond!.gatheringRows([0, 0])
        repeated.idVitHidden = try shared.idVitHidden!.map { try $0.gatheringRows([0, 0]) }
        let a = try model(shared), b = try model(repeated)
        #expect(try Tensor.relativeL2(a, b) < 1e-6)
        var first = shared
        first.hiddenStates = try shared.hiddenStates.gatheringRows([0])
        first.encoderHiddenStates = try shared.encoderHiddenStates.gatheringRows([0])
        first.timestep = try Tensor(shape: [1], repeating: 625)
        #expect(try Tensor.relativeL2(model(first), a.gatheringRows([0])) < 1e-6)
    }

    /// Configurations diffusers cannot run are typed errors naming the field; ConsisID's constructor
    /// takes no `patch_size_t`, `ofs_embed_dim` or `patch_bias`, so a file's values for them are ignored.
    @Test func badConfigurationsAreTypedErrors() throws {
        func field(_ c: ConsisIDConfiguration) -> String? {
            do { try c.validate(); return nil } catch {
                guard case let .unsupportedConfig(field, _, _) = error else { return "other" }
                return field
            }
        }
        #expect(field(tinyConsisID()) == nil)
        var c = tinyConsisID(); c.lfeOutputDim = 20
        #expect(field(c) == "LFE_output_dim")
        #expect(field(tinyConsisID(layers: 3, interval: 2)) == "cross_attn_interval")
        #expect(field(tinyConsisID(layers: 3, interval: 3)) == nil)
        #expect(field(tinyConsisID(depth: 3)) == "LFE_depth")
        c = tinyConsisID(); c.lfeNumScale = 0
        #expect(field(c) == "LFE_num_scale")
        c = tinyConsisID(); c.crossAttnNumHeads = 0
        #expect(field(c) == "cross_attn_num_heads")
        c = tinyConsisID(); c.localFaceScale = .nan
        #expect(field(c) == "local_face_scale")
        c = tinyConsisID(face: false); c.lfeOutputDim = 20
        #expect(field(c) == nil, "without identity layers the extractor's fields are unused")
        c = tinyConsisID(); c.backbone.numAttentionHeads = 0
        #expect(field(c) == "num_attention_heads")

        let json = #"{"_class_name": "ConsisIDTransformer3DModel", "num_attention_heads": 2, "attention_head_dim": 16,"#
            + #" "patch_size_t": 2, "ofs_embed_dim": 16, "patch_bias": false, "is_train_face": true, "LFE_output_dim": 21,"#
            + #" "use_rotary_positional_embeddings": true, "LFE_num_querie": 7, "is_kps": true}"#
        let parsed = try ConsisIDConfiguration.parse(Data(json.utf8))
        #expect(parsed.backbone.patchSizeT == nil && parsed.backbone.ofsEmbedDim == nil && parsed.backbone.patchBias)
        #expect(parsed.isTrainFace && parsed.isKps && parsed.lfeNumQueries == 7 && parsed.lfeVitDim == 1024)
        #expect(parsed.crossAttentionCount == 15 && parsed.crossAttnKVDim == 21)
        #expect(throws: ModelLoadError.self) {
            try ConsisIDConfiguration.parse(Data(#"{"_class_name": "CogVideoXTransformer3DModel"}"#.utf8))
        }
    }

    /// A missing or mis-shaped identity tensor is one typed error listing it.
    @Test func badWeightsAreTypedErrors() throws {
        let c = tinyConsisID()
        var (_, weights) = try Self.randomModel(c)
        weights["perceiver_cross_attention.0.to_q.weight"] = nil
        weights["local_facial_extractor.proj_out"] = try Tensor(zeros: [16, 20])
        #expect { try ConsisIDFamily.load(c, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["perceiver_cross_attention.0.to_q.weight"] && unexpected.isEmpty
                && misshaped.map(\.name) == ["local_facial_extractor.proj_out"]
        }
    }

    /// Missing or mis-shaped identity arguments are typed errors, never a trap.
    @Test func badInputsAreTypedErrors() throws {
        let c = tinyConsisID()
        let (model, _) = try Self.randomModel(c)
        let good = consisIDInput(c, batch: 2, idBatch: 2)
        #expect(try model(good).shape == [2, 2, 4, 4, 4])
        var x = good; x.idCond = nil
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.idVitHidden = Array(good.idVitHidden!.prefix(1))
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.idCond = randomTensor([3, c.lfeIdDim], seed: 9)
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.idVitHidden![1] = randomTensor([2, 3, c.lfeVitDim + 1], seed: 9)
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.idVitHidden![0] = randomTensor([1, 3, c.lfeVitDim], seed: 9)
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.idCond = try Tensor(shape: [2, c.lfeIdDim], repeating: .nan)
        #expect(throws: TensorError.self) { try model(x) }
        x = good; x.hiddenStates = randomTensor([2, 2, 4, 4, 4], seed: 9)
        #expect(throws: TensorError.self) { try model(x) }
        // Extra ViT scales beyond LFE_num_scale are not read (diffusers indexes the first ones).
        x = good; x.idVitHidden!.append(randomTensor([5], seed: 9))
        #expect(try model(x) == model(good))
    }

    /// The memory budget covers the identity layers: a budget between the backbone's estimate and
    /// ConsisID's refuses the forward before anything is computed.
    @Test func theMemoryBudgetCountsTheIdentityLayers() throws {
        let c = tinyConsisID()
        var (model, _) = try Self.randomModel(c)
        let x = consisIDInput(c)
        let full = c.activationBytes(batch: 1, videoTokens: 8, textTokens: 5, vitTokens: 3, faceBatch: 1)
        let backbone = c.backbone.activationBytes(batch: 1, videoTokens: 8, textTokens: 5)
        #expect(full > backbone)
        model.memoryBudget = MemoryBudget(bytes: (full + backbone) / 2)
        #expect(throws: TensorError.self) { try model(x) }
        model.memoryBudget = MemoryBudget(bytes: full)
        #expect(try model(x).shape == [1, 2, 4, 4, 4])
    }

    /// The family's preset is TeaCache4ConsisID's (CogVideoX-5b coefficients, δ 0.1), and the `consisid`
    /// record's counter kind gives the standard schedule (first and last call forced in a run of N).
    @Test func presetAndCounter() throws {
        #expect(ConsisIDFamily.presets == [.consisID])
        #expect(TeaCachePreset.consisID.coefficients == TeaCachePreset.cogVideoX5B.coefficients)
        #expect(TeaCachePreset.consisID.defaultThreshold == 0.1 && TeaCachePreset.consisID.schedule == .standard)
        try TeaCachePreset.consisID.validate()
        let sampling = try JSONDecoder().decode(SamplingDescription.self, from: Data(contentsOf: Fixtures.url("consisid", "sampling.json")))
        let record = try #require(sampling.records.first)
        #expect(record.counterKind == "consisid")
        let configuration = try ConsisIDFamily.teaCacheConfiguration(record: record, steps: 12)
        #expect(configuration.schedule == .standard)
        #expect(throws: VerifyError.self) { try ConsisIDFamily.teaCacheConfiguration(record: record, steps: 13) }
        let forced = record.calls.filter(\.forced).map(\.call)
        #expect(forced == [0, 11])
    }

    /// The benchmark shape: a ConsisID forward that runs, its FLOPs above the backbone's by the identity layers.
    @Test func benchmarkShapeRunsAndCountsTheIdentityLayers() throws {
        let shape = ConsisIDFamily.benchmarkDefault
        let cost = try ConsisIDFamily.cost(shape.configuration, sizes: shape.inputs)
        let backbone = shape.configuration.backbone.forwardFLOPs(batch: 1, videoTokens: 1024, textTokens: 128)
        #expect(cost.flops > backbone && cost.flops < 1.1 * backbone)
        #expect(cost.summary == "ConsisID 512-wide, 4 blocks, 2 cross-attentions, 4-layer extractor, 1024 video + 128 text tokens, batch 1")
        let small = BenchmarkInputs(["batch": 2, "latent_frames": 2, "latent_height": 4, "latent_width": 4, "text_tokens": 5,
                                     "vit_tokens": 3, "id_batch": 1])
        let c = tinyConsisID()
        let inputs = try ConsisIDFamily.randomInputs(c, sizes: small, seed: 1)
        #expect(inputs.latent.shape == [2, 2, 4, 4, 4])
        let (model, _) = try Self.randomModel(c)
        #expect(try model(inputs.makeInput(inputs.latent, 500, .cond)).shape == [2, 2, 4, 4, 4])
        var bad = small; bad.values["id_batch"] = 3
        #expect(throws: ModelLoadError.self) { try ConsisIDFamily.randomInputs(c, sizes: bad, seed: 1) }
    }
}
