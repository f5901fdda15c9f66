import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// Mochi's own layers against naive Double references, its bad-input errors, and its loading errors.
@Suite("Mochi model")
struct MochiModelTests {
    // MARK: Naive references for the new layers

    /// `h + RMSNorm(x)·tanh(gate)` equals the Double formula (ε = 1e-6, per-sample gate).
    @Test func gatedRMSResidualMatchesTheFormula() throws {
        let (b, s, d) = (2, 3, 21)  // d not a multiple of 16: the scalar tail of the row sum runs too
        let h = randomTensor([b, s, d], seed: 1), x = randomTensor([b, s, d], seed: 2), g = randomTensor([b, d], seed: 3)
        let out = try mochiGatedRMSResidual(h, x, gate: g)
        var ref = [Double]()
        for bi in 0..<b { for t in 0..<s {
            let row = (0..<d).map { Double(x[bi, t, $0]) }
            let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(d) + 1e-6).squareRoot()
            for j in 0..<d { ref.append(Double(h[bi, t, j]) + row[j] * inv * Foundation.tanh(Double(g[bi, j]))) }
        } }
        // A handful of float32 roundings per element (the vectorised tanh is accurate to ~1e-7).
        #expect(relL2(out, try Tensor(shape: out.shape, scalars: ref.map(Float.init))) < 1e-6)
        #expect(throws: TensorError.self) { try mochiGatedRMSResidual(h, x, gate: randomTensor([b, d + 1], seed: 3)) }
    }

    /// The fused q/k norm + rotary split equals the Double formula per head: `x̂ = x / √(mean(x²) + 1e-5) · w`,
    /// pairs rotated `(â cos − b̂ sin, b̂ cos + â sin)`; v is copied unchanged.
    @Test func normRotateSplitMatchesTheFormula() throws {
        let (b, s, heads, dh) = (2, 3, 2, 18)  // Dh = 18: the 16-lane sum and its scalar tail
        let d = heads * dh
        let qkv = randomTensor([b, s, 3 * d], seed: 21)
        let wq = randomTensor([dh], seed: 22), wk = randomTensor([dh], seed: 23)
        let angles = randomTensor([s, d / 2], seed: 24) * 3
        var cosT = [Float](), sinT = [Float]()
        for t in 0..<s { for i in 0..<(d / 2) {
            let a = Double(angles[t, i])
            cosT += [Float(Foundation.cos(a)), Float(Foundation.cos(a))]
            sinT += [Float(Foundation.sin(a)), Float(Foundation.sin(a))]
        } }
        let cos = try Tensor(shape: [s, d], scalars: cosT), sin = try Tensor(shape: [s, d], scalars: sinT)
        let (q, k, v) = try mochiNormRotateSplit(qkv, heads: heads, headDim: dh, normQ: wq, normK: wk, cos: cos, sin: sin)
        var refQ = [Double](), refK = [Double]()
        for bi in 0..<b { for t in 0..<s { for part in 0..<2 { for h in 0..<heads {
            let w = part == 0 ? wq : wk
            let x = (0..<dh).map { Double(qkv[bi, t, part * d + h * dh + $0]) }
            let inv = 1 / (x.map { $0 * $0 }.reduce(0, +) / Double(dh) + 1e-5).squareRoot()
            let n = (0..<dh).map { x[$0] * inv * Double(w[$0]) }
            var out = [Double](repeating: 0, count: dh)
            for p in 0..<(dh / 2) {
                let angle = Double(angles[t, h * dh / 2 + p])
                out[2 * p] = n[2 * p] * Foundation.cos(angle) - n[2 * p + 1] * Foundation.sin(angle)
                out[2 * p + 1] = n[2 * p + 1] * Foundation.cos(angle) + n[2 * p] * Foundation.sin(angle)
            }
            if part == 0 { refQ += out } else { refK += out }
        } } } }
        // refQ/refK were appended head by head within each token, which is the [B, S, H·Dh] order.
        #expect(relL2(q, try Tensor(shape: [b, s, d], scalars: refQ.map(Float.init))) < 1e-6)
        #expect(relL2(k, try Tensor(shape: [b, s, d], scalars: refK.map(Float.init))) < 1e-6)
        #expect(v == (try qkv.split(sizes: [d, d, d], axis: 2)[2]))
        #expect(throws: TensorError.self) {
            try mochiNormRotateSplit(qkv, heads: heads, headDim: dh, normQ: wq, normK: wk, cos: cos, sin: randomTensor([s, d + 2], seed: 1))
        }
    }

    /// Positions: frame index, then the centres of `n` cells spanning `±n·scale/2` with
    /// `scale = √(192²/(h·w))`; the tables hold cos/sin of `Σ_d pos_d · freq[d, h, f]`, each angle at the
    /// interleaved pair `(h·Dh + 2f, h·Dh + 2f + 1)`.
    @Test func rotaryTablesMatchTheClosedForm() throws {
        let (heads, half) = (2, 3)
        let freqs = randomTensor([3, heads, half], seed: 4) * 0.3
        let (f, h, w) = (2, 3, 5)
        let (cos, sin) = try MochiRotaryEmbedding.tables(frequencies: freqs, frames: f, height: h, width: w)
        #expect(cos.shape == [f * h * w, heads * 2 * half])
        let scale = (192.0 * 192.0 / Double(h * w)).squareRoot()
        var maxErr = 0.0
        var token = 0
        for t in 0..<f { for r in 0..<h { for c in 0..<w {
            let pos = [Double(t), (Double(r) + 0.5) * scale - Double(h) * scale / 2,
                       (Double(c) + 0.5) * scale - Double(w) * scale / 2]
            for hd in 0..<heads { for k in 0..<half {
                let angle = (0..<3).map { pos[$0] * Double(freqs[$0, hd, k]) }.reduce(0, +)
                for e in 0..<2 {
                    let col = hd * 2 * half + 2 * k + e
                    maxErr = max(maxErr, abs(Double(cos[token, col]) - Foundation.cos(angle)),
                                 abs(Double(sin[token, col]) - Foundation.sin(angle)))
                }
            } }
            token += 1
        } } }
        // Angles up to ~60 rounded to float32 (as diffusers' float32 einsum does): ulp(64) ≈ 4e-6.
        #expect(maxErr < 2e-5, "max error \(maxErr)")
        #expect(throws: TensorError.self) {
            try MochiRotaryEmbedding.tables(frequencies: randomTensor([2, heads, half], seed: 4), frames: 1, height: 1, width: 1)
        }
    }

    /// The caption attention pool equals the Double formula: mask-weighted mean as the one query,
    /// 8 heads over `[mean; valid tokens]`, `to_out` — including an all-zero mask (mean token alone) and
    /// fractional mask values (weights of the mean, truth values of the key mask).
    @Test func attentionPoolMatchesTheFormula() throws {
        let c = tinyMochiConfiguration()
        let loader = WeightLoader(randomSeed: 6)
        let pool = MochiAttentionPool(loader.root["pool"], embedDim: 16, outputDim: c.innerDim, heads: 8)
        let masks: [[Double]] = [[1, 1, 0, 1], [0, 0, 0, 0], [0.5, 2, 0, 0]]
        let (b, l, e) = (3, 4, 16)
        let x = randomTensor([b, l, e], seed: 7)
        let out = try pool(x, mask: Tensor(shape: [b, l], scalars: masks.flatMap { $0 }.map(Float.init)))
        let wkv = doubles(loader.supplied["pool.to_kv.weight"]!), bkv = doubles(loader.supplied["pool.to_kv.bias"]!)
        let wq = doubles(loader.supplied["pool.to_q.weight"]!), bq = doubles(loader.supplied["pool.to_q.bias"]!)
        let wo = doubles(loader.supplied["pool.to_out.weight"]!), bo = doubles(loader.supplied["pool.to_out.bias"]!)
        var ref = [Double]()
        for bi in 0..<b {
            let rows = (0..<l).map { j in (0..<e).map { Double(x[bi, j, $0]) } }
            let total = max(masks[bi].reduce(0, +), 1)
            let mean = (0..<e).map { ch in (0..<l).map { rows[$0][ch] * masks[bi][$0] / total }.reduce(0, +) }
            let tokens = [mean] + rows
            let kv = tokens.map { naiveLinear($0, inFeatures: e, weight: wkv, bias: bkv) }
            let q = naiveLinear(mean, inFeatures: e, weight: wq, bias: bq)
            let attend = [true] + masks[bi].map { $0 != 0 }
            var pooled = [Double](repeating: 0, count: e)
            let dh = e / 8
            for hd in 0..<8 {
                let scores = kv.indices.map { j -> Double in
                    attend[j] ? (0..<dh).map { q[hd * dh + $0] * kv[j][hd * dh + $0] }.reduce(0, +) / Double(dh).squareRoot() : -.infinity
                }
                let mx = scores.max()!
                let p = scores.map { Foundation.exp($0 - mx) }
                let z = p.reduce(0, +)
                for i in 0..<dh { pooled[hd * dh + i] = kv.indices.map { p[$0] * kv[$0][e + hd * dh + i] }.reduce(0, +) / z }
            }
            ref += naiveLinear(pooled, inFeatures: e, weight: wo, bias: bo)
        }
        #expect(out.shape == [b, c.innerDim])
        #expect(relL2(out, try Tensor(shape: out.shape, scalars: ref.map(Float.init))) < 1e-5)
    }

    /// diffusers attends each sample over its valid caption tokens and writes their outputs, in order,
    /// to the first rows, zero-padding the rest.
    @Test func textMaskSelectsValidRowsAndPadsAtTheEnd() throws {
        let mask = MochiTextMask(try Tensor(shape: [3, 4], scalars: [1, 0, 1, 1, 0, 0, 0, 0, 1, 1, 0, 0]))
        #expect(mask.validTokens == [[0, 2, 3], [], [0, 1]])
        let rows = try Tensor(shape: [3, 4, 2], scalars: (0..<24).map(Float.init))
        #expect(try mask.validRows(rows, sample: 0).scalars == [0, 1, 4, 5, 6, 7])
        #expect(try mask.validRows(rows, sample: 1).shape == [1, 0, 2])
        #expect(try mask.validRows(rows, sample: 2).scalars == [16, 17, 18, 19])
        let p = try MochiTextMask.padded(mask.validRows(rows, sample: 0), length: 4, width: 2)
        #expect(p.scalars == [0, 1, 4, 5, 6, 7, 0, 0])
        #expect(try MochiTextMask.padded(nil, length: 4, width: 2).scalars == [Float](repeating: 0, count: 8))
        #expect(mask.selecting(batch: [2, 0]).validTokens == [[0, 1], [0, 2, 3]])
    }

    /// The per-frame patch embedding equals a direct Conv2d (kernel = stride = p) over every frame,
    /// tokens in (frame, row, column) order.
    @Test func patchEmbeddingIsAPerFrameConvolution() throws {
        let c = tinyMochiConfiguration()
        let loader = WeightLoader(randomSeed: 5)
        let pe = PatchEmbedding3D(loader.root["patch_embed"]["proj"], inChannels: c.inChannels, outChannels: c.innerDim,
                                  framePatch: (c.patchSize, c.patchSize))
        let w = doubles(loader.supplied["patch_embed.proj.weight"]!)  // [16, 3, 2, 2]
        let bias = doubles(loader.supplied["patch_embed.proj.bias"]!)
        let x = randomTensor([1, 3, 2, 4, 6], seed: 8)
        let out = try pe(x)
        #expect(out.shape == [1, 2 * 2 * 3, 16])
        var ref = [Double]()
        for f in 0..<2 { for i in 0..<2 { for j in 0..<3 { for o in 0..<16 {
            var s = bias[o]
            for ch in 0..<3 { for di in 0..<2 { for dj in 0..<2 {
                s += w[((o * 3 + ch) * 2 + di) * 2 + dj] * Double(x[0, ch, f, 2 * i + di, 2 * j + dj])
            } } }
            ref.append(s)
        } } } }
        #expect(relL2(out, try Tensor(shape: out.shape, scalars: ref.map(Float.init))) < 1e-6)
    }

    // MARK: Inputs

    @Test func outputShapeAndErrorsOnBadInputs() throws {
        let c = tinyMochiConfiguration()
        let model = try MochiFamily.random(c, seed: 1, steps: 64)
        let good = tinyMochiInput(batch: 2, masks: [[1, 1, 1, 0], [1, 0, 0, 0]])
        #expect(try model(good).shape == [2, 3, 2, 4, 4])
        func rejects(_ edit: (inout MochiInput) -> Void, _ label: String) {
            var bad = good
            edit(&bad)
            #expect(throws: TensorError.self, "\(label)") { try model(bad) }
        }
        rejects({ $0.hiddenStates = randomTensor([2, 4, 2, 4, 4], seed: 1) }, "wrong channel count")
        rejects({ $0.hiddenStates = randomTensor([2, 3, 2, 5, 4], seed: 1) }, "height not divisible by the patch")
        rejects({ $0.hiddenStates = randomTensor([2, 3, 4, 4], seed: 1) }, "rank 4 latent")
        rejects({ $0.encoderHiddenStates = randomTensor([2, 4, 15], seed: 2) }, "wrong text width")
        rejects({ $0.encoderHiddenStates = randomTensor([1, 4, 16], seed: 2) }, "text batch differs")
        rejects({ $0.encoderAttentionMask = try! Tensor(shape: [2, 3], repeating: 1) }, "mask shorter than the text")
        rejects({ $0.encoderAttentionMask = try! Tensor(shape: [1, 4], repeating: 1) }, "mask batch differs")
        rejects({ $0.encoderAttentionMask = try! Tensor(shape: [8], repeating: 1) }, "1-D mask")
        rejects({ $0.timestep = try! Tensor(shape: [3], scalars: [1, 2, 3]) }, "timestep count")
        rejects({ $0.timestep = try! Tensor(shape: [2], scalars: [.nan, 2]) }, "NaN timestep")
        rejects({ $0.encoderAttentionMask = try! Tensor(shape: [2, 4], scalars: [1, 1, .infinity, 0, 1, 0, 0, 0]) }, "inf mask")
        rejects({ x in x.hiddenStates.withUnsafeMutableBufferPointer { $0[5] = .nan } }, "NaN latent")
        rejects({ x in x.encoderHiddenStates.withUnsafeMutableBufferPointer { $0[3] = -.infinity } }, "inf text")
    }

    /// A timestep of shape [1] is broadcast over the batch, as diffusers' addition broadcasts it.
    @Test func scalarTimestepBroadcasts() throws {
        let model = try MochiFamily.random(tinyMochiConfiguration(), seed: 1, steps: 64)
        var x = tinyMochiInput(batch: 2, masks: [[1, 1, 0], [1, 1, 1]], timestep: 300)
        let a = try model(x)
        x.timestep = try Tensor(shape: [1], scalars: [300])
        #expect(try model(x) == a)
    }

    /// Without blocks the forward still runs (`norm_out` and `proj_out` on the patch tokens), but
    /// TeaCache's modulated input (`transformer_blocks[0].norm1`) does not exist: a typed error.
    @Test func zeroLayersForwardButNoModulatedInput() throws {
        let model = try MochiFamily.random(tinyMochiConfiguration(layers: 0), seed: 1, steps: 64)
        let x = tinyMochiInput()
        #expect(try model(x).shape == [1, 3, 2, 4, 4])
        #expect(throws: TensorError.self) { try model.modulatedInput(model.prepare(x)) }
    }

    /// One block: it is `context_pre_only` (plain caption norm, no `to_add_out`, no `ff_context`).
    @Test func singleBlockIsContextPreOnly() throws {
        let loader = WeightLoader(randomSeed: 2)
        let model = try MochiFamily.build(tinyMochiConfiguration(layers: 1), loader).model
        #expect(model.blocks.count == 1 && model.blocks[0].contextPreOnly && model.blocks[0].ffContext == nil)
        let names = Set(loader.supplied.keys)
        #expect(names.contains("transformer_blocks.0.norm1_context.linear_1.weight"))
        #expect(names.contains("transformer_blocks.0.attn1.add_q_proj.weight"))
        #expect(!names.contains { $0.contains("to_add_out") || $0.contains("ff_context") })
    }

    // MARK: Loading

    @Test func missingUnexpectedAndMisshapedWeightsAreListedTogether() throws {
        let c = tinyMochiConfiguration()
        let loader = WeightLoader(randomSeed: 1)
        _ = try MochiFamily.build(c, loader).model
        var weights = loader.supplied
        weights["transformer_blocks.0.attn1.to_q.weight"] = nil
        weights["pos_frequencies"] = try Tensor(zeros: [3, 2, 8])  // needs [3, heads, head_dim / 2] = [3, 2, 4]
        weights["transformer_blocks.1.attn1.to_add_out.weight"] = try Tensor(zeros: [12, 16])  // last block has none
        #expect { try MochiFamily.load(c, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.attn1.to_q.weight"]
                && unexpected == ["transformer_blocks.1.attn1.to_add_out.weight"]
                && misshaped.map(\.name) == ["pos_frequencies"]
        }
    }

    /// A configuration that disagrees with the stored weights (the fixture's weights, a much wider
    /// model) fails with the mismatch list, from the headers, without allocating the configured shapes.
    @Test func configurationThatDisagreesWithTheWeightsFails() throws {
        var c = try MochiFixture.configuration()
        c.numAttentionHeads = 64
        c.attentionHeadDim = 1024
        c.pooledProjectionDim = 8192
        let url = Fixtures.folder("mochi").appendingPathComponent("model.safetensors")
        #expect { try MochiFamily.load(c, weightsAt: url) } throws: { e in
            guard case let ModelLoadError.weightMismatch(_, _, misshaped) = e else { return false }
            return misshaped.contains { $0.name == "pos_frequencies" && $0.expected == [3, 64, 512] && $0.found == [3, 2, 8] }
        }
    }

    @Test func randomInitTapersTheTimestepColumns() throws {
        let c = tinyMochiConfiguration()
        let a = try MochiFamily.random(c, seed: 9, steps: 12)
        let w = a.timeEmbedding.timestepEmbedder.linear1.weight.float32Tensor()  // [16, 10]
        let untapered = WeightLoader(randomSeed: 9)
        _ = try MochiFamily.build(c, untapered).model
        let raw = try #require(untapered.supplied["time_embed.timestep_embedder.linear_1.weight"])
        // Column 0 (frequency 1, cos) → factor 0.02; column 4 (frequency 10000^(−4/5)) keeps
        // exp(−0.5·(83.3·6.3e-4/0.1)²) ≈ 0.87.
        let f4 = Foundation.pow(10000.0, -4.0 / 5.0)
        let k4 = Float(Foundation.exp(-0.5 * Foundation.pow(1000.0 / 12 * f4 / 0.1, 2)))
        for r in 0..<16 {
            #expect(abs(w[r, 0] - raw[r, 0] * 0.02) <= 1e-7)
            #expect(abs(w[r, 4] - raw[r, 4] * k4) <= 1e-6)
            #expect(abs(w[r, 9] - raw[r, 9] * k4) <= 1e-6)  // the sine column of the same frequency
        }
    }

    // MARK: TeaCache state

    @Test func stateSelectionGathersBatchElements() throws {
        let model = try MochiFamily.random(tinyMochiConfiguration(), seed: 1, steps: 64)
        let x = tinyMochiInput(batch: 3, masks: [[1, 1, 1, 0], [1, 0, 1, 0], [0, 0, 0, 0]])
        let full = try model.prepare(x)
        let sub = try full.selecting(batch: [2, 1])
        #expect(sub.batchSize == 2 && sub.mask.validTokens == [[], [0, 2]])
        var a = sub
        try model.runBlocks(&a)
        var b = full
        try model.runBlocks(&b)
        // Blocks act per sample: the gathered run equals the matching rows of the full run (1e-6 covers
        // reordered float sums of another batch partitioning).
        #expect(relL2(try a.tokens.slice(axis: 0, 0..<1), try b.tokens.slice(axis: 0, 2..<3)) < 1e-6)
        #expect(relL2(try a.tokens.slice(axis: 0, 1..<2), try b.tokens.slice(axis: 0, 1..<2)) < 1e-6)
        #expect(throws: (any Error).self) { try full.selecting(batch: [3]) }
        // The cached stream is the visual tokens, and runBlocks ends after norm_out: the output head is
        // only proj_out + unpatchify.
        #expect(full.streams.map(\.shape) == [[3, 8, 16]])
        let p = model.configuration.patchSize
        #expect(try model.outputHead(b) == Patches.unpatchify3D(model.projOut(b.tokens), grid: b.grid, patch: (1, p, p),
                                                                 order: .channelsLast))
    }
}
