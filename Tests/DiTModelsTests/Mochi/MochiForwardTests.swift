import Foundation
import Testing
import Safetensors
import Tensors
@testable import DiTModels
import TestSupport

/// The Mochi forward against diffusers 0.42.1 (Tests/Fixtures/mochi and the mochi variants, float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2e-7, so 1e-4 leaves room for another summation order (sgemm blocking, the softmax, the rotary
/// angles' cos/sin in Double), while an ordering, epsilon, mask or layout mistake gives 1e-2 or more.
@Suite("Mochi forward parity")
struct MochiForwardTests {
    /// The public folder plus the variants that change the forward's structure (batch 2 with two
    /// paddings, a mask with holes and an all-zero mask, asymmetric widths, a single block, GEGLU with patch 3).
    static let folders: [String] = ["mochi", "variants/mochi_b2_masks", "variants/mochi_maskholes_b2",
                                    "variants/mochi_widths", "variants/mochi_p1_l1", "variants/mochi_geglu_qknone"]

    @Test(arguments: folders)
    func forwardMatchesDiffusers(_ name: String) throws {
        let folder = Fixtures.folder(name)
        let model = try MochiFixture.model(folder)
        let t = try SafetensorsFile(contentsOf: folder.appendingPathComponent("forward.safetensors")).loadAll()
        let x = try MochiFixture.input(t)
        var state = try model.prepare(x)
        let hIn = state.tokens
        let m = try model.modulatedInput(state)
        try model.runBlocks(&state)
        let residual = try state.tokens - hIn
        let out = try model.outputHead(state)
        for (label, value, key) in [("output", out, "output"), ("modulated input", m, "teacache.modulated_input"),
                                    ("residual", residual, "teacache.residual")] {
            let ref = try #require(t[key])
            #expect(value.shape == ref.shape, "\(name) \(label) shape \(value.shape) vs \(ref.shape)")
            let e = try Tensor.relativeL2(value, ref)
            #expect(e <= 1e-4, "\(name) \(label) rel L2 \(e)")
        }
        #expect(try model(x) == out)
    }

    /// The modulated input does not change the state (TeaCache calls it before the blocks).
    @Test func modulatedInputLeavesTheStateAlone() throws {
        let model = try MochiFixture.model()
        let x = try MochiFixture.input(Fixtures.tensors("mochi", "forward.safetensors"))
        var a = try model.prepare(x)
        _ = try model.modulatedInput(a)
        var b = try model.prepare(x)
        try model.runBlocks(&a)
        try model.runBlocks(&b)
        #expect(a.tokens == b.tokens)
    }
}
