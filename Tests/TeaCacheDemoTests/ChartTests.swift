import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
import TeaCache
@testable import TeaCacheDemo

/// Collects element names and attributes with XMLParser (which also proves well-formedness).
final class SVGCollector: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    func parser(_ parser: XMLParser, didStartElement name: String, namespaceURI: String?, qualifiedName: String?,
                attributes: [String: String] = [:]) {
        elements.append((name, attributes))
    }
}

@Suite struct ChartTests {
    /// A 6-call trace: forced compute, three skips, a compute, the forced last step.
    static func trace() throws -> CacheTrace {
        var policy = try TeaCachePolicy(configuration: try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 0.25), steps: 6)
        var t = CacheTrace(steps: 6)
        for (i, d) in [nil, 0.1, 0.1, 0.04, 0.2, 0.1].enumerated() {
            t.entries.append(.init(call: i, step: i, branch: .cond, decision: try policy.decide(step: i, branch: .cond, distance: d)))
        }
        return t
    }

    @Test func svgIsWellFormedWithKeyElements() throws {
        let trace = try Self.trace()
        let s = trace.summary
        #expect(s.computed == 3 && s.skipped == 3)  // steps 0, 4 (0.1+0.1+0.04+0.2 ≥ 0.25 after 0.24), 5
        let svg = TraceChart.svg(trace: trace, threshold: 0.25, title: "A & B <test>")
        let collector = SVGCollector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = collector
        #expect(parser.parse(), "SVG must parse as XML: \(parser.parserError.map { "\($0)" } ?? "")")
        let names = collector.elements.map(\.name)
        #expect(names.first == "svg")
        #expect(collector.elements.first?.attributes["xmlns"] == "http://www.w3.org/2000/svg")
        let ids = Set(collector.elements.compactMap { $0.attributes["id"] })
        #expect(ids.isSuperset(of: ["axes", "threshold", "rescaled", "accumulator", "decisions", "legend"]))
        let classes = collector.elements.compactMap { $0.attributes["class"] }
        #expect(classes.filter { $0 == "computed" }.count == 3)
        #expect(classes.filter { $0 == "skipped" }.count == 3)
        #expect(names.contains("polyline"))
        #expect(svg.contains("A &amp; B &lt;test&gt;"))
        // The threshold line is horizontal.
        let line = try #require(collector.elements.first { $0.attributes["id"] == "threshold" })
        #expect(line.attributes["y1"] == line.attributes["y2"])
    }

    @Test func segmentsBreakAtMissingValues() {
        let s = TraceChart.segments([nil, 1, 2, nil, .nan, 3])
        #expect(s.map { $0.map(\.0) } == [[1, 2], [5]])
    }
}

/// Chart axes at nice numbers.
@Suite struct NiceTicksTests {
    @Test func ticksAreNiceAndCoverTheRange() {
        let t = NiceTicks(low: 0, high: 0.66, count: 5)
        #expect(t.step == 0.2)
        #expect(t.values.map(t.label) == ["0.0", "0.2", "0.4", "0.6", "0.8"])
        let small = NiceTicks(low: 0, high: 0.0433, count: 5)
        #expect(small.values.map(small.label) == ["0.00", "0.01", "0.02", "0.03", "0.04", "0.05"])
        let negative = NiceTicks(low: -0.3, high: 1.2, count: 5)
        #expect(negative.values.first! <= -0.3 && negative.values.last! >= 1.2 && negative.step == 0.5)
        #expect(NiceTicks.niceNumber(2.8, round: false) == 5 && NiceTicks.niceNumber(2.8, round: true) == 2)
        #expect(NiceTicks.niceNumber(5.6, round: false) == 10 && NiceTicks.niceNumber(0, round: true) == 1)
    }
}
