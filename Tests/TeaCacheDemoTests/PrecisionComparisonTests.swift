import Foundation
import Testing
import TeaCache
import Tensors
@testable import TeaCacheDemo

/// The demo's precision table on the tiny FLUX: float32 is the reference; every other precision gives a
/// different latent, close to it (bf16/int8 above 40 dB, f16 above 60 dB on this model; measured 59–85 dB
/// on the embedded-shape model), and the table says how each precision's products ran.
@Suite struct PrecisionComparisonTests {
    @Test func precisionsAreComparedAgainstFloat32Uncached() throws {
        let dir = try EndToEndTests.scratch("precisions")
        defer { try? FileManager.default.removeItem(at: dir) }  // temporary folder cleanup
        let source = ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 4)
        let table = try PrecisionComparison.run(source: source, precisions: [.int8, .bfloat16, .float16], threshold: 0.3)
        #expect(table.rows.map(\.precision) == [.float32, .int8, .bfloat16, .float16])
        #expect(table.rows[0].uncached.psnr.isInfinite)
        for row in table.rows.dropFirst() {
            #expect(row.uncached.psnr.isFinite, "\(row.precision) should differ from float32")
            #expect(row.uncached.psnr > (row.precision == .float16 ? 60 : 40), "\(row.precision): \(row.uncached.psnr) dB")
            #expect(row.calls == 4 && row.computed >= 1 && row.computed <= 4)
        }
        let text = table.render()
        #expect(text.contains("| int8 |") && text.contains("bfloat16:") && text.contains("products"))
    }

    @Test func precisionNamesAndShortFormsParse() {
        #expect(WeightPrecision(name: "bf16") == .bfloat16 && WeightPrecision(name: "FP16") == .float16 && WeightPrecision(name: "i8") == .int8)
        #expect(WeightPrecision(name: "fp8") == nil && WeightPrecision(name: "") == nil)
    }
}
