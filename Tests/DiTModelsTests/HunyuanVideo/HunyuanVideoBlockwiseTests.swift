import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// HunyuanVideo block by block on the variant folders whose single-stream path differs from the public
/// one: token-replace modulation of the first frame (also in batch 2 with padded masks and no q/k norm),
/// padded masks in batch 2, and deeper stacks. Each runs the dual- and single-stream blocks one index at a
/// time (every single-stream block joins and splits the streams) and must give the streams of the fused
/// `runBlocks` (which joins once) to float rounding (≤ 1e-6: the same operations in the same order, only
/// the copies differ), and First-Block Cache at threshold 0 must reproduce the uncached sampling loop.
@Suite("HunyuanVideo block by block")
struct HunyuanVideoBlockwiseTests {
    @Test(arguments: ["hunyuan_video_token_replace", "hunyuan_video_tr_b2_qknone", "hunyuan_video_b2_mask",
                      "hunyuan_video_deep"])
    func blockByBlockEqualsTheStack(_ name: String) throws {
        let folder = try FixtureFolder(VariantFixtureTests.root.appendingPathComponent(name))
        try BlockwiseTests.check(HunyuanVideoFamily.self, folder)
    }

    /// A block index outside `0 ..< num_layers + num_single_layers` is a typed error, not a trap.
    @Test func blockIndexOutOfRangeIsATypedError() throws {
        let folder = try FixtureFolder(Fixtures.folder("hunyuan_video"))
        let c = try HunyuanVideoConfiguration.parse(folder.config, className: folder.className)
        let model = try HunyuanVideoFamily.load(c, weightsAt: folder.weightsURL)
        var state = try model.prepare(try HunyuanVideoFamily.forwardInput(folder.forwardArguments(), configuration: c))
        let count = model.blockCount(state)
        #expect(count == c.numLayers + c.numSingleLayers)
        #expect(throws: TensorError.self) { try model.runBlock(count, &state) }
        #expect(throws: TensorError.self) { try model.runBlock(-1, &state) }
    }
}
