import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

@Suite("LTX-Video TeaCache")
struct LTXVideoTeaCacheTests {
    /// `teacache verify` on the public folder: every check passes (forward tensors, every decision, both
    /// final latents).
    @Test func verifyPassesOnTheLTXVideoFixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("ltx_video"))
        #expect(report.family == "ltx_video")
        for check in report.checks { #expect(check.passed, "\(check.name): \(check.measurement)") }
        let names = report.checks.map(\.name)
        for expected in ["forward output", "forward modulated_input", "forward residual",
                         "sampling default decisions", "sampling default final cached"] {
            #expect(names.contains(expected), "missing check \(expected)")
        }
    }

    /// The modulated input is block 0's `norm1(h_in)·(1 + scale_msa) + shift_msa`, recomputed here in
    /// Double from the state: RMS over the row (ε = norm_eps), then the first two of the six
    /// `scale_shift_table + temb` rows.
    @Test func modulatedInputIsBlockZerosModulatedNorm() throws {
        let model = try LTXVideoFamily.random(tinyLTXConfiguration(), seed: 6, steps: 50)
        let s = try model.prepare(tinyLTXInput())
        let m = try model.modulatedInput(s)
        let d = model.innerDim
        let table = model.blocks[0].scaleShiftTable
        var maxErr = 0.0
        for b in 0..<2 { for t in 0..<12 {
            let row = (0..<d).map { Double(s.tokens[b, t, $0]) }
            let inv = 1 / ((row.map { $0 * $0 }.reduce(0, +) / Double(d)) + 1e-6).squareRoot()
            for j in 0..<d {
                let shift = Double(table[0, j]) + Double(s.blocks.temb[b, 0, j])
                let scale = Double(table[1, j]) + Double(s.blocks.temb[b, 0, d + j])
                maxErr = max(maxErr, abs(Double(m[b, t, j]) - (row[j] * inv * (1 + scale) + shift)))
            }
        } }
        #expect(maxErr < 1e-5)
    }

    /// The cached span ends after the output norm: `outputHead` is `proj_out` alone.
    @Test func outputHeadIsTheProjectionOnly() throws {
        let model = try LTXVideoFamily.random(tinyLTXConfiguration(), seed: 6, steps: 50)
        var s = try model.prepare(tinyLTXInput())
        try model.runBlocks(&s)
        #expect(try model.outputHead(s) == model.projOut(s.tokens))
    }

    @Test func stateSelectionGathersBatchElements() throws {
        let model = try LTXVideoFamily.random(tinyLTXConfiguration(), seed: 1, steps: 50)
        var x = try tinyLTXInput(batch: 3)
        x.timestep = try Tensor(shape: [3], scalars: [900, 500, 100])
        let full = try model.prepare(x)
        let sub = try full.selecting(batch: [2, 0])
        #expect(sub.batchSize == 2)
        #expect(try sub.tokens.slice(axis: 0, 0..<1) == full.tokens.slice(axis: 0, 2..<3))
        var a = sub
        try model.runBlocks(&a)
        var b = full
        try model.runBlocks(&b)
        // Blocks act per sample: the gathered run equals the matching rows (1e-6 covers reordered sums).
        #expect(relL2(try a.tokens.slice(axis: 0, 0..<1), try b.tokens.slice(axis: 0, 2..<3)) < 1e-6)
        #expect(relL2(try a.tokens.slice(axis: 0, 1..<2), try b.tokens.slice(axis: 0, 0..<1)) < 1e-6)
        #expect(throws: (any Error).self) { try full.selecting(batch: [3]) }
    }

    /// The family's preset is the reference's (spec §2.2) and the record's counter is the standard one.
    @Test func presetAndCounter() throws {
        #expect(LTXVideoFamily.presets.map(\.name) == ["ltx_video"])
        #expect(TeaCachePreset.ltxVideo.coefficients == [2.14700694e+01, -1.28016453e+01, 2.31279151e+00,
                                                         7.92487521e-01, 9.69274326e-03])
        #expect(!TeaCachePreset.unportedModels.contains { $0.name == "ltx_video" })
        let folder = try FixtureFolder(Fixtures.folder("ltx_video"))
        let c = try LTXVideoFamily.teaCacheConfiguration(record: folder.sampling.records[0], steps: 12)
        #expect(c.schedule == .standard && c.threshold == 0.09481)
    }
}
