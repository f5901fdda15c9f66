import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The EasyAnimate forward against diffusers 0.42.1 (the public fixture, generated in float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). Both sides are float32; the reference's own float32 vs
/// float64 distance is ~2e-7, so 1e-4 leaves room for another summation order while any indexing,
/// ordering or formula mistake gives errors of order 1e-2 or more.
@Suite struct EasyAnimateForwardTests {
    static func model(_ folder: String = "easyanimate") throws -> EasyAnimateTransformer {
        let config = try EasyAnimateConfiguration.load(Fixtures.folder(folder).appendingPathComponent("config.json"))
        return try EasyAnimateFamily.load(config, tensors: Fixtures.tensors(folder, "model.safetensors"))
    }

    static func inputs(_ t: [String: Tensor]) throws -> EasyAnimateInput {
        EasyAnimateInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                         encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                         encoderHiddenStatesT5: t["input.encoder_hidden_states_t5"],
                         inpaintLatents: t["input.inpaint_latents"], controlLatents: t["input.control_latents"])
    }

    @Test func forwardMatchesDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("easyanimate", "forward.safetensors")
        let x = try Self.inputs(t)
        var state = try model.prepare(x)
        let m = try model.modulatedInput(state)
        let hIn = state.video
        try model.runBlocks(&state)
        let residual = try state.video - hIn
        let out = try model.outputHead(state)
        let eOut = try Tensor.relativeL2(out, #require(t["output"]))
        let eM = try Tensor.relativeL2(m, #require(t["teacache.modulated_input"]))
        let eR = try Tensor.relativeL2(residual, #require(t["teacache.residual"]))
        #expect(eOut <= 1e-4, "output rel L2 \(eOut)")
        #expect(eM <= 1e-4, "modulated input rel L2 \(eM)")
        #expect(eR <= 1e-4, "residual (incl. norm_final and norm_out) rel L2 \(eR)")
        #expect(out.shape == x.hiddenStates.shape)
        // The one-call forward is the same composition.
        #expect(try model(x) == out)
    }

    /// Batch elements are independent, and a `[1]` timestep is broadcast: a batch of two equals the two
    /// single-sample forwards (up to the batched sgemm's summation order; 1e-5 is far below any mixing).
    @Test func batchElementsAreIndependent() throws {
        let model = try Self.model()
        let one = try Self.inputs(Fixtures.tensors("easyanimate", "forward.safetensors"))
        var other = one
        other.hiddenStates = one.hiddenStates * -0.5
        other.encoderHiddenStates = one.encoderHiddenStates * 0.75
        var both = one
        both.hiddenStates = try Tensor.concatenate([one.hiddenStates, other.hiddenStates], axis: 0)
        both.encoderHiddenStates = try Tensor.concatenate([one.encoderHiddenStates, other.encoderHiddenStates], axis: 0)
        let expected = try Tensor.concatenate([model(one), model(other)], axis: 0)
        #expect(try Tensor.relativeL2(model(both), expected) <= 1e-5)
        // Per-sample timesteps: the second sample at another time.
        var later = other
        later.timestep = try Tensor(shape: [1], scalars: [250])
        both.timestep = try Tensor(shape: [2], scalars: [one.timestep.scalars[0], 250])
        let perSample = try Tensor.concatenate([model(one), model(later)], axis: 0)
        #expect(try Tensor.relativeL2(model(both), perSample) <= 1e-5)
    }

    /// The rotary table is `get_3d_rotary_pos_embed` on the crop region of the patched grid in the fixed
    /// 45 × 30 base (patch 2): a 4 × 4 grid is resized to 30 × 30 and centred, rows
    /// `linspace(0, 30·3/4, 4)`, columns `linspace(8, 38·3/4, 4)` (round(7.5) = 8, half to even), frames
    /// `linspace(0, F(F−1)/F, F)`; head dim 16 splits 4 + 6 + 6, each frequency `10000^(−2i/dim)` repeated for
    /// the interleaved pair.
    @Test func rotaryTableMatchesTheClosedForm() throws {
        let (cos, sin) = try EasyAnimateRotaryEmbedding.videoTables(headDim: 16, frames: 2, height: 4, width: 4, patch: 2)
        #expect(cos.shape == [32, 16])
        let rows = [0, 7.5, 15, 22.5], columns = [8, 8 + 20.5 / 3, 8 + 41 / 3.0, 28.5], frames = [0.0, 1.0]
        let dims = [4, 6, 6]
        var maxErr = 0.0
        var token = 0
        for f in 0..<2 { for r in 0..<4 { for c in 0..<4 {
            let pos = [frames[f], rows[r], columns[c]]
            var col = 0
            for (a, dim) in dims.enumerated() {
                for i in 0..<(dim / 2) {
                    let angle = pos[a] * Foundation.pow(10000, -Double(2 * i) / Double(dim))
                    for k in 0..<2 {
                        maxErr = max(maxErr, abs(Double(cos[token, col + 2 * i + k]) - Foundation.cos(angle)))
                        maxErr = max(maxErr, abs(Double(sin[token, col + 2 * i + k]) - Foundation.sin(angle)))
                    }
                }
                col += dim
            }
            token += 1
        } } }
        // float32 positions and frequencies (as diffusers): angles up to ~28.5 rad carry ~4e-6 of rounding.
        #expect(maxErr <= 1e-5, "max abs error \(maxErr)")
    }
}

/// Typed errors for configurations, weights and inputs the model cannot run with.
@Suite struct EasyAnimateErrorTests {
    static func config(_ change: (inout [String: Any]) -> Void) throws -> Data {
        let url = Fixtures.folder("easyanimate").appendingPathComponent("config.json")
        var file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        var body = try #require(file["config"] as? [String: Any])
        change(&body)
        file["config"] = body
        return try JSONSerialization.data(withJSONObject: file)
    }

    static func field(_ data: Data) -> String? {
        do { _ = try EasyAnimateConfiguration.parse(data) } catch {
            if case let .unsupportedConfig(field, _, _) = error { return field }
            return "other: \(error)"
        }
        return nil
    }

    @Test func badConfigurationsNameTheField() throws {
        #expect(Self.field(try Self.config { _ in }) == nil)
        #expect(Self.field(try Self.config { $0["in_channels"] = NSNull() }) == "in_channels")
        #expect(Self.field(try Self.config { $0.removeValue(forKey: "patch_size") }) == "patch_size")
        #expect(Self.field(try Self.config { $0["out_channels"] = 0 }) == "out_channels")
        #expect(Self.field(try Self.config { $0["attention_head_dim"] = 24 }) == "attention_head_dim")
        #expect(Self.field(try Self.config { $0["activation_fn"] = "relu" }) == "activation_fn")
        #expect(Self.field(try Self.config { $0["timestep_activation_fn"] = "mish" }) == "timestep_activation_fn")
        #expect(Self.field(try Self.config { $0["num_layers"] = -1 }) == "num_layers")
        #expect(Self.field(try Self.config { $0["norm_eps"] = 0 }) == "norm_eps")
        #expect(Self.field(try Self.config { $0["patch_size"] = 61 }) == "patch_size")
        #expect(Self.field(try Self.config {
            $0["add_norm_text_encoder"] = true
            $0["text_embed_dim_t5"] = 8
        }) == "text_embed_dim_t5")
    }

    /// Keys the 0.42.1 class never reads in its forward decode to the same configuration.
    @Test func keysWithoutEffectAreAccepted() throws {
        let base = try EasyAnimateConfiguration.parse(Self.config { _ in })
        let flipped = try EasyAnimateConfiguration.parse(Self.config {
            $0["time_position_encoding_type"] = "2d_rope"
            $0["resize_inpaint_mask_directly"] = false
            $0["enable_text_attention_mask"] = false
            $0["add_noise_in_inpaint_model"] = false
            $0["sample_width"] = 7
            $0["dropout"] = 0.5
        })
        #expect(base == flipped)
    }

    @Test func missingAndMisshapedWeightsAreListed() throws {
        let config = try EasyAnimateConfiguration.load(Fixtures.folder("easyanimate").appendingPathComponent("config.json"))
        var weights = try Fixtures.tensors("easyanimate", "model.safetensors")
        weights["transformer_blocks.0.txt_ff.net.2.bias"] = nil
        weights["proj.weight"] = try Tensor(zeros: [32, 4, 2])
        #expect { try EasyAnimateFamily.load(config, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.txt_ff.net.2.bias"] && unexpected.isEmpty
                && misshaped.map(\.name) == ["proj.weight"]
        }
    }

    @Test func inputsThatDoNotFitAreRefused() throws {
        let model = try EasyAnimateForwardTests.model()
        let x = try EasyAnimateForwardTests.inputs(Fixtures.tensors("easyanimate", "forward.safetensors"))
        var wrongChannels = x
        wrongChannels.hiddenStates = try Tensor(zeros: [1, 3, 2, 8, 8])
        var oddGrid = x
        oddGrid.hiddenStates = try Tensor(zeros: [1, 4, 2, 7, 8])
        var extraChannels = x
        extraChannels.inpaintLatents = try Tensor(zeros: [1, 2, 2, 8, 8])
        var t5 = x
        t5.encoderHiddenStatesT5 = try Tensor(zeros: [1, 3, 32])
        var text = x
        text.encoderHiddenStates = try Tensor(zeros: [1, 6, 31])
        var timestep = x
        timestep.timestep = try Tensor(zeros: [3])
        var nan = x
        nan.encoderHiddenStates[0, 0, 0] = .nan
        for bad in [wrongChannels, oddGrid, extraChannels, t5, text, timestep, nan] {
            #expect(throws: TensorError.self) { try model(bad) }
        }
        var small = model
        small.memoryBudget = MemoryBudget(bytes: 1000)
        #expect { try small(x) } throws: { e in
            if case TensorError.memoryBudgetExceeded = e { return true }
            return false
        }
    }

    /// A model without blocks still runs (the output norms and projection) but has no modulated input.
    @Test func aModelWithoutBlocksHasNoModulatedInput() throws {
        var c = try EasyAnimateConfiguration.load(Fixtures.folder("easyanimate").appendingPathComponent("config.json"))
        c.numLayers = 0
        let model = try EasyAnimateFamily.random(c, seed: 3, steps: 12)
        let x = try EasyAnimateForwardTests.inputs(Fixtures.tensors("easyanimate", "forward.safetensors"))
        #expect(try model(x).shape == x.hiddenStates.shape)
        #expect(throws: TensorError.self) { try model.modulatedInput(model.prepare(x)) }
    }
}
