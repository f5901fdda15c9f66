import Foundation
import Testing
import TeaCache
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

    /// The cap explains a shortfall only near the cap: far below it the note says timing variation.
    @Test func capNoteOnlyNearTheCap() {
        // 19 of 28 computed, skipped calls at 10%: cap 28 / (19 + 9·0.1) = 1.4070; predicted 1.4737.
        var row = DemoRow(coefficients: "lumina2", threshold: 0.3, computed: 19, calls: 28, wallSeconds: 10 / 1.10,
                          uncachedWallSeconds: 10, relativeL1: 0, psnr: 40)
        let far = DemoTable.render([row], uncachedWallSeconds: 10, calls: 28, skippedCallFraction: 0.1)
        #expect(!far.contains("caps this skip pattern"), "1.10x is far below the 1.41x cap: \(far)")
        #expect(far.contains("the skip pattern allows 1.41x: the gap is run-to-run timing variation"))
        row.wallSeconds = 10 / 1.35   // 1.35 ≥ 0.9 × 1.4070
        let near = DemoTable.render([row], uncachedWallSeconds: 10, calls: 28, skippedCallFraction: 0.1)
        #expect(near.contains("which caps this skip pattern at 1.41x"), "\(near)")
    }

    /// A measured speedup above what the computed calls allow is marked as timing noise.
    @Test func speedupAboveThePredictionIsTimingNoise() {
        let mochi = DemoRow(coefficients: "mochi preset", threshold: 0.06, computed: 8, calls: 8, wallSeconds: 10 / 1.51,
                            uncachedWallSeconds: 10, relativeL1: 0, psnr: .infinity)
        #expect(mochi.isTimingNoise && mochi.meetsHonestyTarget)
        let fine = DemoRow(coefficients: "x", threshold: 0.2, computed: 7, calls: 28, wallSeconds: 10 / 4.05,
                           uncachedWallSeconds: 10, relativeL1: 0, psnr: 40)
        #expect(!fine.isTimingNoise, "4.05x against a predicted 4x is within the 3% tolerance")
        let table = DemoTable.render([mochi, fine], uncachedWallSeconds: 10, calls: 8)
        #expect(table.contains("1.51x*"))
        #expect(table.contains("note: mochi preset δ=0.06: measured 1.51x* is more than 8 of 8 computed calls allow (1.00x): timing noise"))
        #expect(table.components(separatedBy: "note:").count == 2)
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

/// A calibration below the R² floor is shown as refused, never as rows.
@Suite struct RefusedCalibrationTests {
    static func fit(rSquared: Double) throws -> Calibration.Fit {
        try JSONDecoder().decode(Calibration.Fit.self, from: Data("""
            {"coefficients": [1, 2, 3, 4, 5], "rSquared": \(rSquared), "rmsResidual": 0.01,
             "inputRange": [0.01, 0.05], "sampleCount": 27}
            """.utf8))
    }

    static func report(_ fit: Calibration.Fit, rows: [DemoRow]) -> DemoReport {
        DemoReport(summary: "tiny", steps: 28, calls: 28, uncachedWallSeconds: 10, calibration: fit, calibrationProblem: nil,
                   overhead: DecisionOverhead(decisionSeconds: 0.001, forwardSeconds: 0.3, prepareSeconds: 0.001, headSeconds: 0.001),
                   rows: rows, files: [])
    }

    @Test func lowRSquaredIsRefused() throws {
        let text = Self.report(try Self.fit(rSquared: 0.29), rows: []).render()
        #expect(text.contains("calibrated coefficients refused: R² = 0.29 is below 0.9, so the table has no calibrated rows"))
        let good = Self.report(try Self.fit(rSquared: 0.99), rows: []).render()
        #expect(!good.contains("refused"))
    }

    /// End to end: a tiny demo whose fit is poor runs no `calibrated` rows.
    @Test func refusedFitHasNoRows() throws {
        let dir = try EndToEndTests.scratch("refused")
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = DemoOptions(source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 10),
                                  thresholds: [0.1], outputDirectory: dir.appendingPathComponent("out").path,
                                  overheadRepeats: 1, repeats: 1)
        let report = try DemoRunner.run(options, progress: EndToEndTests.quiet)
        let fit = try #require(report.calibration)
        let calibratedRows = report.rows.filter { $0.coefficients == "calibrated" }
        #expect(calibratedRows.isEmpty == (fit.rSquared < CalibrationRunner.minimumRSquared), "R² \(fit.rSquared)")
        #expect(report.render().contains("calibrated coefficients refused") == (fit.rSquared < CalibrationRunner.minimumRSquared))
    }
}
