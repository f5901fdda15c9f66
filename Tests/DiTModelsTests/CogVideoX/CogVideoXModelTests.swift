import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// The CogVideoX layers against naive Double references, and the model's input checks.
@Suite("CogVideoX model")
struct CogVideoXModelTests {
    // MARK: - Positional and rotary tables

    /// The sincos table equals the closed form of `get_3d_sincos_pos_embed`: temporal `[sin, cos]` of
    /// `t/ts` over D/4 channels, then the column's and the row's `[sin, cos]` of `x/ss` over 3D/8 each.
    @Test func sincosTableMatchesTheClosedForm() throws {
        let d = 32, (f, h, w) = (2, 3, 4), (ss, ts) = (1.875, 0.5)
        let table = try CogVideoXSincosPositionEmbedding.table(dim: d, frames: f, height: h, width: w,
                                                               spatialScale: ss, temporalScale: ts)
        #expect(table.shape == [f * h * w, d])
        func block(_ pos: Double, _ width: Int) -> [Double] {
            let half = width / 2
            let omega = (0..<half).map { 1 / pow(10000, Double($0) / Double(half)) }
            return omega.map { sin(pos * $0) } + omega.map { cos(pos * $0) }
        }
        var worst = 0.0, token = 0
        for t in 0..<f { for r in 0..<h { for c in 0..<w {
            let ref = block(Double(t) / ts, d / 4) + block(Double(c) / ss, 3 * d / 8) + block(Double(r) / ss, 3 * d / 8)
            for j in 0..<d { worst = max(worst, abs(Double(table[token, j]) - ref[j])) }
            token += 1
        } } }
        // Positions are float32 quotients (t/0.5 exact, c/1.875 within 1 ulp); float32 rounding of the result.
        #expect(worst <= 2e-7)
        #expect(throws: TensorError.self) { try CogVideoXSincosPositionEmbedding.table(dim: 24, frames: 1, height: 1, width: 1, spatialScale: 1, temporalScale: 1) }
    }

    /// `get_resize_crop_region_for_grid` with Python's round-half-to-even, on hand-computed cases.
    @Test func cropRegion() {
        // 4×4 grid in an 8-high, 12-wide base: height-limited, centred horizontally.
        #expect(CogVideoXRotaryEmbedding.resizeCropRegion(grid: (4, 4), baseWidth: 12, baseHeight: 8) == (0, 2, 8, 10))
        // 30×45 grid (CogVideoX-5b at 480×720) in its own 30×45 base: the whole base.
        #expect(CogVideoXRotaryEmbedding.resizeCropRegion(grid: (30, 45), baseWidth: 45, baseHeight: 30) == (0, 0, 30, 45))
        // 3×5 in a 4×4 base: width-limited, resize_height = round(4/5·3) = round(2.4) = 2, top = round(1.0) = 1.
        #expect(CogVideoXRotaryEmbedding.resizeCropRegion(grid: (3, 5), baseWidth: 4, baseHeight: 4) == (1, 0, 3, 4))
        // Half-way cases round to even: (5 − 2)/2 = 1.5 → 2, (5 − 4)/2 = 0.5 → 0.
        #expect(CogVideoXRotaryEmbedding.resizeCropRegion(grid: (2, 4), baseWidth: 4, baseHeight: 5).top == 2)
        #expect(CogVideoXRotaryEmbedding.resizeCropRegion(grid: (4, 4), baseWidth: 5, baseHeight: 4).left == 0)
    }

    @Test func linspaceIsTorchs() {
        #expect(CogVideoXRotaryEmbedding.linspace(start: 0, end: 6, steps: 4) == [0, 2, 4, 6])
        #expect(CogVideoXRotaryEmbedding.linspace(start: 3, end: 9, steps: 1) == [3])
        let v = CogVideoXRotaryEmbedding.linspace(start: 2, end: 7.5, steps: 4)
        #expect(v.first == 2 && v.last == 7.5 && abs(v[1] - (2 + 5.5 / 3)) < 1e-6)
    }

    /// The rotary table: each axis part rotates by its position with frequencies 1/10000^(2i/dim),
    /// every frequency repeated for the interleaved pair (checked against Double).
    @Test func rotaryTableMatchesTheClosedForm() throws {
        let frames: [Float] = [0, 1], rows: [Float] = [0, 2, 4], cols: [Float] = [1.5, 3]
        let (cosT, sinT) = try CogVideoXRotaryEmbedding.tables(headDim: 32, frames: frames, rows: rows, columns: cols)
        #expect(cosT.shape == [12, 32])
        let dims = [8, 12, 12]
        var worst = 0.0, token = 0
        for f in frames { for r in rows { for c in cols {
            var col = 0
            for (a, pos) in [f, r, c].enumerated() {
                for i in 0..<(dims[a] / 2) {
                    let angle = Double(pos) / pow(10000, Double(2 * i) / Double(dims[a]))
                    for k in 0..<2 {
                        worst = max(worst, abs(Double(cosT[token, col + 2 * i + k]) - cos(angle)))
                        worst = max(worst, abs(Double(sinT[token, col + 2 * i + k]) - sin(angle)))
                    }
                }
                col += dims[a]
            }
            token += 1
        } } }
        // float32 frequencies and products (angles below 5): a few ulps.
        #expect(worst <= 2e-6)
        #expect(throws: TensorError.self) { try CogVideoXRotaryEmbedding.tables(headDim: 24, frames: [0], rows: [0], columns: [0]) }
    }

    // MARK: - Patch embedding and unpatchify

    /// 1.0: a per-frame Conv2d (kernel = stride = p) over `[B, F, C, H, W]`, tokens in (frame, row, column)
    /// order; 1.5: a linear layer over `(c, p_t, p, p)` patches. Both against direct loops.
    @Test(arguments: [false, true])
    func patchEmbeddingMatchesLoops(_ temporal: Bool) throws {
        let c = temporal ? tinyCogVideoX15() : tinyCogVideoX2B()
        let loader = WeightLoader(randomSeed: 5)
        let pe = CogVideoXPatchEmbedding(loader.root["patch_embed"], configuration: c)
        let w = doubles(loader.supplied["patch_embed.proj.weight"]!)
        let bias = loader.supplied["patch_embed.proj.bias"].map(doubles)
        let (f, h, wd) = (2, 4, 6)
        let x = randomTensor([1, f, c.inChannels, h, wd], seed: 8)
        let text = randomTensor([1, c.maxTextSeqLength, c.textEmbedDim], seed: 9)
        var embedded = try pe(text: text, video: x).video
        if !temporal {  // remove the sincos table to compare the projection alone
            embedded = try embedded - pe.sincosTable((f, h / 2, wd / 2))
        }
        let pt = c.temporalPatch, d = c.innerDim, ch = c.inChannels
        var ref = [Double]()
        for ft in 0..<(f / pt) { for i in 0..<(h / 2) { for j in 0..<(wd / 2) { for o in 0..<d {
            var s = bias?[o] ?? 0
            var k = 0
            for cc in 0..<ch { for dt in 0..<pt { for di in 0..<2 { for dj in 0..<2 {
                s += w[o * c.patchWidth + k] * Double(x[0, ft * pt + dt, cc, 2 * i + di, 2 * j + dj])
                k += 1
            } } } }
            ref.append(s)
        } } } }
        #expect(embedded.shape == [1, (f / pt) * (h / 2) * (wd / 2), d])
        #expect(relL2(embedded, try Tensor(shape: embedded.shape, scalars: ref.map(Float.init))) < 1e-5)
    }

    /// The output head writes `[B, F, C, H, W]` with each token's `(c, p_t, p, p)` values at their
    /// places; `out_channels` may differ from `in_channels`.
    @Test func unpatchifyPlacesEveryValue() throws {
        let c = tinyCogVideoX15(outChannels: 3)
        let model = try CogVideoXFamily.random(c, seed: 2, steps: 10)
        let x = cogInput(c, frames: 4, height: 4, width: 6, text: 3)
        var state = try model.prepare(x)
        try model.runBlocks(&state)
        let out = try model.outputHead(state)
        #expect(out.shape == [1, 4, 3, 4, 6])
        // Recompute the tokens before unpatchify and check one value of every (t, c, h, w) position.
        let v = try layerNorm(state.video, weight: model.normFinal.weight, bias: model.normFinal.bias, eps: c.normEps)
        let m = try model.normOutLinear.fewRows(silu(state.emb))
        let chunks = CogVideoXKernels.Chunks(shift: 0, scale: 1)
        let n = try CogVideoXKernels.layerNormModulated(v, leadingRows: 0, eps: c.normEps, weight: model.normOutNorm.weight,
                                                        bias: model.normOutNorm.bias, modulation: m, leading: chunks, trailing: chunks)
        let tokens = try model.projOut(n)  // [1, 2·2·3, 3·2·2·2]
        for f in 0..<4 { for ch in 0..<3 { for h in 0..<4 { for w in 0..<6 {
            let token = ((f / 2) * 2 + h / 2) * 3 + w / 2
            let value = ((ch * 2 + f % 2) * 2 + h % 2) * 2 + w % 2
            #expect(out[0, f, ch, h, w] == tokens[0, token, value])
        } } } }
    }

    // MARK: - Inputs

    @Test func badInputsAreTypedErrors() throws {
        let c = tinyCogVideoX15(ofs: 24)
        let model = try CogVideoXFamily.random(c, seed: 1, steps: 10)
        let good = cogInput(c, batch: 2, text: 3)
        #expect(try model(good).shape == [2, 2, 4, 4, 4])
        func fails(_ edit: (inout CogVideoXInput) -> Void, _ what: String) {
            var x = good
            edit(&x)
            #expect(throws: TensorError.self, "\(what)") { try model(x) }
        }
        fails({ $0.hiddenStates = randomTensor([2, 4, 2, 4, 4], seed: 1) }, "channels and frames swapped")
        fails({ $0.hiddenStates = randomTensor([2, 3, 4, 4, 4], seed: 1) }, "3 frames with patch_size_t 2")
        fails({ $0.hiddenStates = randomTensor([2, 2, 4, 5, 4], seed: 1) }, "odd height")
        fails({ $0.hiddenStates = randomTensor([2, 2, 4, 20, 4], seed: 1) }, "grid 10 rows > rotary base 8")
        fails({ $0.encoderHiddenStates = randomTensor([2, 3, 11], seed: 2) }, "text width")
        fails({ $0.encoderHiddenStates = randomTensor([1, 3, 12], seed: 2) }, "text batch")
        fails({ $0.timestep = try! Tensor(shape: [3], scalars: [1, 2, 3]) }, "timestep length")
        fails({ $0.timestep = try! Tensor(shape: [2], scalars: [.nan, 2]) }, "NaN timestep")
        fails({ $0.ofs = nil }, "ofs missing")
        fails({ $0.ofs = try! Tensor(shape: [2], scalars: [2, .infinity]) }, "infinite ofs")
        fails({ x in
            var h = x.hiddenStates
            h.withUnsafeMutableBufferPointer { $0[7] = .nan }
            x.hiddenStates = h
        }, "NaN latent")
        // A model without an ofs embedding rejects an ofs (diffusers would ignore it).
        let t2v = try CogVideoXFamily.random(tinyCogVideoX15(), seed: 1, steps: 10)
        var x = good
        x.ofs = try Tensor(shape: [1], repeating: 2)
        #expect(throws: TensorError.self) { try t2v(x) }
        // Positional-table models need max_text_seq_length text tokens; learned tables the sample size.
        let sincos = try CogVideoXFamily.random(tinyCogVideoX2B(), seed: 1, steps: 10)
        #expect(try sincos(cogInput(tinyCogVideoX2B(), text: 5)).shape == [1, 2, 4, 4, 4])
        #expect(throws: TensorError.self) { try sincos(cogInput(tinyCogVideoX2B(), text: 4)) }
        var learned = tinyCogVideoX2B()
        learned.useRotaryPositionalEmbeddings = true
        learned.useLearnedPositionalEmbeddings = true
        let lm = try CogVideoXFamily.random(learned, seed: 1, steps: 10)
        #expect(try lm(cogInput(learned, frames: 2, height: 8, width: 8, text: 5)).shape == [1, 2, 4, 8, 8])
        #expect(throws: TensorError.self) { try lm(cogInput(learned, frames: 2, height: 4, width: 8, text: 5)) }
    }

    /// A forward whose activation estimate exceeds the model's memory budget is refused before anything
    /// is computed, with the estimate and the budget in the error.
    @Test func forwardBeyondTheMemoryBudgetIsRefused() throws {
        var model = try CogVideoXFixtures.model("cogvideox")
        let x = try CogVideoXFixtures.input(CogVideoXFixtures.tensors("cogvideox", "forward.safetensors"))
        let estimate = model.configuration.activationBytes(batch: 1, videoTokens: 16, textTokens: 6)
        model.memoryBudget = MemoryBudget(bytes: estimate)
        _ = try model(x)
        model.memoryBudget = MemoryBudget(bytes: estimate - 1)
        let refusal = TensorError.memoryBudgetExceeded(operation: "CogVideoX forward of batch 1, 16 video + 6 text tokens",
                                                       bytes: estimate, budget: estimate - 1)
        #expect(throws: refusal) { try model(x) }
    }

    /// A timestep (and ofs) of shape [1] is broadcast over the batch, as diffusers' broadcasting does.
    @Test func scalarTimestepAndOfsBroadcast() throws {
        let c = tinyCogVideoX15(ofs: 24)
        let model = try CogVideoXFamily.random(c, seed: 1, steps: 10)
        var x = cogInput(c, batch: 2, text: 3)
        x.timestep = try Tensor(shape: [1], repeating: 400)
        let a = try model(x)
        x.timestep = try Tensor(shape: [2], repeating: 400)
        x.ofs = try Tensor(shape: [2], repeating: 2)
        #expect(try model(x) == a)
    }

    // MARK: - Weights

    @Test func missingUnexpectedAndMisshapedWeightsAreListedTogether() throws {
        let c = tinyCogVideoX15()
        let loader = WeightLoader(randomSeed: 1)
        _ = try CogVideoXFamily.build(c, loader).model
        var weights = loader.supplied
        #expect(weights["patch_embed.proj.bias"] != nil, "the 1.5 Linear projection always has a bias")
        #expect(weights["patch_embed.pos_embedding"] == nil)
        weights["transformer_blocks.0.attn1.to_k.weight"] = nil
        weights["proj_out.bias"] = try Tensor(zeros: [3])
        weights["ofs_embedding.linear_1.weight"] = try Tensor(zeros: [24, 24])  // no ofs_embed_dim
        #expect { try CogVideoXFamily.load(c, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.attn1.to_k.weight"] && unexpected == ["ofs_embedding.linear_1.weight"]
                && misshaped.map(\.name) == ["proj_out.bias"]
        }
        // Without attention bias or elementwise affine those tensors are not taken.
        var plain = c
        plain.attentionBias = false
        plain.normElementwiseAffine = false
        let p = WeightLoader(randomSeed: 1)
        _ = try CogVideoXFamily.build(plain, p).model
        #expect(p.supplied["transformer_blocks.0.attn1.to_q.bias"] == nil && p.supplied["norm_final.weight"] == nil)
        #expect(p.supplied["transformer_blocks.0.attn1.norm_q.bias"] != nil && p.supplied["transformer_blocks.0.attn1.to_out.0.bias"] != nil)
    }

    /// The §6 taper of the time (and ofs) embedding's first layer: column of frequency f scaled by
    /// max(exp(−0.5·(u·f/0.1)²), 0.02), u = 1000/steps.
    @Test func randomInitTapersTheTimestepColumns() throws {
        let c = tinyCogVideoX15(ofs: 24)
        let tapered = try CogVideoXFamily.random(c, seed: 9, steps: 12)
        let raw = WeightLoader(randomSeed: 9)
        _ = try CogVideoXFamily.build(c, raw).model
        for (name, weight, dim) in [("time_embedding.linear_1.weight", tapered.timeEmbedding.linear1.weight.float32Tensor(), c.innerDim),
                                    ("ofs_embedding.linear_1.weight", tapered.ofsEmbedding!.linear1.weight.float32Tensor(), 24)] {
            let r = try #require(raw.supplied[name])
            let half = dim / 2
            for col in [0, half - 1, dim - 1] {
                let freq = exp(-log(10000.0) * Double(col % half) / Double(half))
                let k = Float(max(exp(-0.5 * pow(1000.0 / 12 * freq / 0.1, 2)), 0.02))
                for row in 0..<weight.shape[0] { #expect(abs(weight[row, col] - r[row, col] * k) <= 1e-7) }
            }
        }
        #expect(throws: ModelLoadError.self) { try CogVideoXFamily.random(c, seed: 1, steps: 0) }
    }
}
