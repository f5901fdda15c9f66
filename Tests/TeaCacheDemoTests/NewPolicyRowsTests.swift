import Foundation
import Testing
@testable import TeaCacheDemo

/// The TaylorSeer, EasyCache, DBCache and forecast rows of `teacache demo --policy …` on the tiny FLUX model.
@Suite(.serialized) struct NewPolicyRowsTests {
    @Test func newPoliciesGetTheirRows() throws {
        let dir = try EndToEndTests.scratch("new-policies")
        defer { try? FileManager.default.removeItem(at: dir) }
        var options = DemoOptions(
            source: ModelSource(configPath: dir.appendingPathComponent("tiny.json").path, seed: 3, steps: 6),
            thresholds: [0.3], outputDirectory: dir.appendingPathComponent("out").path, overheadRepeats: 1, repeats: 1)
        options.policies = try DemoPolicy.parse("taylorseer,easycache,dbcache,forecast")
        options.dbCacheThresholds = [0, 1e9]
        let report = try DemoRunner.run(options, progress: EndToEndTests.quiet)
        let byLabel = Dictionary(grouping: report.rows, by: \.coefficients)
        // TaylorSeer: intervals 2 and 3 (threshold column), orders 1 and 2; warm-up 1, so with 6 steps interval 2
        // computes steps 0, 2, 4 and interval 3 steps 0, 2, 5.
        let taylor = report.rows.filter { $0.coefficients.hasPrefix("taylorseer") }
        #expect(taylor.map(\.threshold) == [2, 2, 3, 3])
        #expect(taylor.map(\.computed) == [3, 3, 3, 3] && taylor.allSatisfy { $0.calls == 6 })
        #expect(byLabel["easycache"]?.map(\.threshold) == [0.05, 0.1, 0.2])
        // DBCache F1B0 with warm-up 1: threshold 0 computes every call, 1e9 every call after the first.
        let db = try #require(byLabel["dbcache F1B0"])
        #expect(db.map(\.computed) == [6, 1] && db.allSatisfy { $0.firstBlockShare == 0.5 })
        #expect(db[0].relativeL1 == 0)
        // Forecast rows: stale, first and second order of the same decisions, so the same computed counts.
        let forecast = report.rows.filter { $0.coefficients.hasSuffix("stale") || $0.coefficients.contains("+forecast") }
        #expect(forecast.count == 6)
        for group in stride(from: 0, to: forecast.count, by: 3) {
            let three = forecast[group..<(group + 3)]
            #expect(Set(three.map(\.computed)).count == 1, "\(three.map(\.coefficients))")
        }
        #expect(throws: DemoError.self) { try DemoPolicy.parse("taylor") }
        #expect(try DemoPolicy.parse("all").count == DemoPolicy.allCases.count)
    }
}
