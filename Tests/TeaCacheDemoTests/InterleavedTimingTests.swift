import Foundation
import Testing
@testable import TeaCacheDemo

/// `teacache demo --repeats N`: uncached and cached runs interleaved round by round, the spread of the
/// wall times, and speedups from runs of the same round.
@Suite struct InterleavedTimingTests {
    typealias Run = DemoRunner.TimedRun

    @Test func runOrderInterleavesRoundsAndReversesOddOnes() {
        #expect(DemoRunner.runOrder(rows: 2, repeats: 2) == [
            Run(round: 0, row: nil), Run(round: 0, row: 0), Run(round: 0, row: 1),
            Run(round: 1, row: nil), Run(round: 1, row: 1), Run(round: 1, row: 0),
        ])
        #expect(DemoRunner.runOrder(rows: 3, repeats: 1) == [
            Run(round: 0, row: nil), Run(round: 0, row: 0), Run(round: 0, row: 1), Run(round: 0, row: 2),
        ])
        // Round 3 (index 2) is in plan order again.
        #expect(DemoRunner.runOrder(rows: 2, repeats: 3).suffix(3) == [
            Run(round: 2, row: nil), Run(round: 2, row: 0), Run(round: 2, row: 1),
        ])
        #expect(DemoRunner.runOrder(rows: 0, repeats: 2) == [Run(round: 0, row: nil), Run(round: 1, row: nil)])
    }

    /// The real demo with repeats 2, its run order recorded through the progress factory (one bar per run).
    @Test func tinyDemoInterleavesUncachedAndCachedRuns() throws {
        let dir = try EndToEndTests.scratch("interleave")
        defer { try? FileManager.default.removeItem(at: dir) }
        let options = DemoOptions(
            source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 4),
            thresholds: [0, 0.5], outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1, repeats: 2)
        var labels: [String] = []
        let report = try DemoRunner.run(options) { label in
            labels.append(label)
            return EndToEndTests.quiet(label)
        }
        #expect(labels == ["uncached", "flux preset δ=0", "flux preset δ=0.5",
                           "uncached (2/2)", "flux preset δ=0.5 (2/2)", "flux preset δ=0 (2/2)"])
        // Every round's wall time is kept; the table's wall s is the fastest, measured the median paired ratio.
        #expect(report.uncachedWallSamples.count == 2)
        #expect(report.uncachedWallSeconds == report.uncachedWallSamples.min())
        #expect(report.rows.count == 2)
        for row in report.rows {
            let walls = try #require(row.wallSamples)
            #expect(walls.count == 2 && row.wallSeconds == walls.min())
            #expect(row.uncachedWallSamples == report.uncachedWallSamples)
            #expect(row.measuredSpeedup == DemoStatistics.median(zip(report.uncachedWallSamples, walls).map { $0 / $1 }))
        }
        #expect(report.render().contains("spread"))
    }

    @Test func relativeSpreadIsSlowestMinusFastestOverFastest() throws {
        // (2.5 − 2.0) / 2.0 = 0.25, whatever the order.
        #expect(try #require(DemoStatistics.relativeSpread([2.2, 2.5, 2.0])) == 0.25)
        #expect(try #require(DemoStatistics.relativeSpread([4, 4])) == 0)
        #expect(DemoStatistics.relativeSpread([3]) == nil)
        #expect(DemoStatistics.relativeSpread([]) == nil)
        #expect(DemoStatistics.relativeSpread([0, 1]) == nil)
    }

    @Test func pairedSpeedupsDivideRunsOfTheSameRound() {
        #expect(DemoStatistics.pairedSpeedups(uncached: [10, 14], cached: [5, 4]) == [2, 3.5])
        #expect(DemoStatistics.pairedSpeedups(uncached: [10, 14], cached: [5, 0]) == [2])
        #expect(DemoStatistics.pairedSpeedups(uncached: [10], cached: [5, 4]) == [2])
    }

    /// Uncached 10 s and 14 s, cached 5 s and 4 s: paired speedups 2 and 3.5, median 2.75 — not the
    /// 10 / 4 = 2.5 of the two fastest runs, which were not measured next to each other.
    @Test func rowUsesPairedSpeedupsAndTableShowsSpread() {
        var row = DemoRow(coefficients: "x", threshold: 0.3, computed: 7, calls: 28, wallSeconds: 4,
                          uncachedWallSeconds: 10, relativeL1: 0.01, psnr: 50)
        #expect(row.measuredSpeedup == 2.5)
        row.wallSamples = [5, 4]
        row.uncachedWallSamples = [10, 14]
        #expect(row.measuredSpeedup == 2.75)
        #expect(row.wallSpread == 0.25)
        let table = DemoTable.render([row], uncachedWallSeconds: 10, calls: 28, uncachedWallSamples: [10, 14])
        let lines = table.split(separator: "\n").map(String.init)
        #expect(lines[0].split(separator: " ").map(String.init)
                == ["coefficients", "threshold", "computed", "wall", "s", "spread", "measured", "predicted", "rel", "L1", "PSNR", "dB"])
        // (14 − 10) / 10 = 40 %, (5 − 4) / 4 = 25 %.
        #expect(lines[2].split(separator: " ").map(String.init) == ["uncached", "-", "28/28", "10.00", "40.0%", "1.00x", "1.00x", "0", "inf"])
        #expect(lines[3].split(separator: " ").map(String.init)
                == ["x", "0.3", "7/28", "4.00", "25.0%", "2.75x", "4.00x", "1.00e-02", "50.0"])
        // A single run per row: no spread column, as before.
        let single = DemoTable.render([DemoRow(coefficients: "x", threshold: 0.3, computed: 7, calls: 28, wallSeconds: 2.5,
                                               uncachedWallSeconds: 10, relativeL1: 0.01, psnr: 50)],
                                      uncachedWallSeconds: 10, calls: 28)
        #expect(!single.contains("spread"))
    }
}
