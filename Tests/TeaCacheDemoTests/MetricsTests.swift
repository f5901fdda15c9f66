import Foundation
import Testing
import Tensors
@testable import TeaCacheDemo

@Suite struct MetricsTests {
    // Closed forms: x = r + c everywhere gives Σ|x−r|/Σ|r| = n·c / Σ|r| and MSE = c².
    @Test func relativeL1AndPSNRMatchClosedForms() throws {
        let r = try Tensor(shape: [2, 2], scalars: [-1, 0, 1, 2])      // range 3, Σ|r| = 4
        let x = try Tensor(shape: [2, 2], scalars: [-0.5, 0.5, 1.5, 2.5]) // r + 0.5
        let c = try LatentComparison(x, reference: r)
        // Tolerance 1e-12: all values are exact in binary floating point; only log10 rounds.
        #expect(abs(c.relativeL1 - 4 * 0.5 / 4) < 1e-12)
        #expect(abs(c.psnr - 10 * log10(9 / 0.25)) < 1e-12)
    }

    @Test func identicalLatentsHaveZeroErrorAndInfinitePSNR() throws {
        let r = try Tensor(shape: [3], scalars: [1, 2, 3])
        let c = try LatentComparison(r, reference: r)
        #expect(c.relativeL1 == 0)
        #expect(c.psnr == .infinity)
    }

    @Test func mismatchedShapesAreRejected() throws {
        let a = try Tensor(zeros: [2]), b = try Tensor(zeros: [3])
        #expect(throws: DemoError.self) { try LatentComparison(a, reference: b) }
    }

    @Test func rowSpeedupsAndHonestyTarget() {
        let row = DemoRow(coefficients: "x", threshold: 0.3, computed: 7, calls: 28, wallSeconds: 2.5,
                          uncachedWallSeconds: 10, relativeL1: 0.01, psnr: 50)
        #expect(row.predictedSpeedup == 4)
        #expect(row.measuredSpeedup == 4)
        #expect(row.meetsHonestyTarget)
        var slow = row
        slow.wallSeconds = 10 / 3.8  // 3.8 < 0.97 · 4 = 3.88
        #expect(!slow.meetsHonestyTarget)
        let table = DemoTable.render([row, slow], uncachedWallSeconds: 10, calls: 28, skippedCallFraction: 0)
        #expect(table.contains("7/28"))
        #expect(table.contains("4.00x"))
        #expect(table.components(separatedBy: "note:").count == 2)  // exactly one note, for the slow row
        #expect(table.contains("3.80x is below 0.97"))
    }

    @Test func noteExplainsTheFixedPerCallCost() {
        // 3 of 28 computed with skipped calls at 1% of a forward: 28 / (3 + 25·0.01) = 8.615…
        let row = DemoRow(coefficients: "c", threshold: 1, computed: 3, calls: 28, wallSeconds: 10 / 8.6,
                          uncachedWallSeconds: 10, relativeL1: 0, psnr: 40)
        let table = DemoTable.render([row], uncachedWallSeconds: 10, calls: 28, skippedCallFraction: 0.01)
        #expect(table.contains("caps this skip pattern at 8.62x"))
    }

    @Test func medianOfOddAndEvenCounts() {
        #expect(DemoStatistics.median([3, 1, 2]) == 2)
        #expect(DemoStatistics.median([4, 1, 3, 2]) == 2.5)
        #expect(DemoStatistics.median([]) == 0)
    }

    @Test func progressBarLine() {
        var written: [String] = []
        let bar = ProgressBar(label: "run", interactive: false, width: 10) { written.append($0) }
        // 7 of 28 steps after 7 s: 1 s per step, 21 steps left → ETA 21 s; 10·7/28 = 2 cells filled.
        #expect(bar.line(step: 7, total: 28, elapsed: 7) == "run [##........] 7/28 7.0s ETA 21.0s")
        bar.update(step: 1, total: 2, elapsed: 1)
        #expect(written.isEmpty)  // no redraws when not a terminal
        bar.finish(steps: 2, wallSeconds: 1.5)
        #expect(written == ["run: 2 steps in 1.50s\n"])
    }
}
