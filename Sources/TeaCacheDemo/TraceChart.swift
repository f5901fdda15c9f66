import Foundation
import TeaCache

/// A hand-written SVG chart of one TeaCache run: per model call, the rescaled distance `P(d)` and the
/// accumulator compared with the threshold, the threshold as a dashed line, and a mark per call —
/// filled for computed, hollow for skipped.
public enum TraceChart {
    /// Chart geometry (pixels).
    static let width = 760.0, height = 420.0
    static let left = 84.0, right = 190.0, top = 44.0, bottom = 64.0
    /// Colours.
    static let rescaledColor = "#1f77b4", accumulatorColor = "#ff7f0e", thresholdColor = "#d62728"
    static let computedColor = "#2ca02c", skippedColor = "#7f7f7f"

    /// The SVG document for `trace` at `threshold`, titled `title`.
    public static func svg(trace: CacheTrace, threshold: Double, title: String) -> String {
        let entries = trace.entries
        let n = max(entries.count, 1)
        let values = entries.flatMap { [$0.rescaled, $0.accumulated].compactMap { $0 } }.filter(\.isFinite)
        var yMin = min(0, values.min() ?? 0)
        var yMax = max(threshold, values.max() ?? 0) * 1.05
        if !(yMax > yMin) { yMax = yMin + 1 }
        if !yMin.isFinite { yMin = 0 }
        let yTicks = NiceTicks(low: yMin, high: yMax, count: 5)
        (yMin, yMax) = (yTicks.values.first ?? yMin, yTicks.values.last ?? yMax)
        let plotW = width - left - right, plotH = height - top - bottom
        func x(_ i: Int) -> Double { left + (n == 1 ? plotW / 2 : plotW * Double(i) / Double(n - 1)) }
        func y(_ v: Double) -> Double { top + plotH * (1 - (v - yMin) / (yMax - yMin)) }
        func f(_ v: Double) -> String { String(format: "%.2f", v) }

        var s: [String] = []
        s.append(#"<?xml version="1.0" encoding="UTF-8"?>"#)
        s.append(#"<svg xmlns="http://www.w3.org/2000/svg" width="\#(f(width))" height="\#(f(height))" "#
                 + #"viewBox="0 0 \#(f(width)) \#(f(height))" font-family="sans-serif" font-size="12">"#)
        s.append(#"<title>\#(escape(title))</title>"#)
        s.append(#"<rect x="0" y="0" width="\#(f(width))" height="\#(f(height))" fill="white"/>"#)
        s.append(#"<text x="\#(f(width / 2))" y="24" text-anchor="middle" font-size="15">\#(escape(title))</text>"#)

        // Axes, ticks and grid.
        s.append(#"<g id="axes" stroke="black" stroke-width="1">"#)
        s.append(#"<line x1="\#(f(left))" y1="\#(f(top + plotH))" x2="\#(f(left + plotW))" y2="\#(f(top + plotH))"/>"#)
        s.append(#"<line x1="\#(f(left))" y1="\#(f(top))" x2="\#(f(left))" y2="\#(f(top + plotH))"/>"#)
        s.append("</g>")
        s.append(#"<g id="y-ticks">"#)
        for v in yTicks.values {
            s.append(#"<line x1="\#(f(left - 4))" y1="\#(f(y(v)))" x2="\#(f(left + plotW))" y2="\#(f(y(v)))" stroke="rgb(221,221,221)"/>"#)
            s.append(#"<text x="\#(f(left - 8))" y="\#(f(y(v) + 4))" text-anchor="end">\#(yTicks.label(v))</text>"#)
        }
        s.append("</g>")
        s.append(#"<g id="x-ticks">"#)
        let stride = max(1, Int(NiceTicks.niceNumber(Double(n) / 10, round: false)))
        for i in Swift.stride(from: 0, to: n, by: stride) {
            s.append(#"<line x1="\#(f(x(i)))" y1="\#(f(top + plotH))" x2="\#(f(x(i)))" y2="\#(f(top + plotH + 4))" stroke="black"/>"#)
            s.append(#"<text x="\#(f(x(i)))" y="\#(f(top + plotH + 18))" text-anchor="middle">\#(i)</text>"#)
        }
        s.append("</g>")
        s.append(#"<text x="\#(f(left + plotW / 2))" y="\#(f(height - 14))" text-anchor="middle">model call (step)</text>"#)
        s.append(#"<text x="18" y="\#(f(top + plotH / 2))" text-anchor="middle" "#
                 + #"transform="rotate(-90 18 \#(f(top + plotH / 2)))">rescaled distance / accumulator</text>"#)

        // Threshold, series, marks.
        s.append(#"<line id="threshold" x1="\#(f(left))" y1="\#(f(y(threshold)))" x2="\#(f(left + plotW))" "#
                 + #"y2="\#(f(y(threshold)))" stroke="\#(thresholdColor)" stroke-width="1.5" stroke-dasharray="6 4"/>"#)
        for (id, color, key) in [("rescaled", rescaledColor, \CacheTrace.Entry.rescaled),
                                 ("accumulator", accumulatorColor, \CacheTrace.Entry.accumulated)] {
            s.append(#"<g id="\#(id)" fill="none" stroke="\#(color)" stroke-width="1.8">"#)
            for segment in segments(entries.map { $0[keyPath: key] }) {
                let pts = segment.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " ")
                s.append(segment.count == 1
                         ? #"<circle cx="\#(f(x(segment[0].0)))" cy="\#(f(y(segment[0].1)))" r="2" fill="\#(color)"/>"#
                         : #"<polyline points="\#(pts)"/>"#)
            }
            s.append("</g>")
        }
        s.append(#"<g id="decisions">"#)
        let markY = top + plotH - 8
        for (i, e) in entries.enumerated() {
            let computed = e.decision == .compute
            s.append(#"<circle class="\#(computed ? "computed" : "skipped")" cx="\#(f(x(i)))" cy="\#(f(markY))" r="4" "#
                     + (computed ? #"fill="\#(computedColor)" stroke="\#(computedColor)"/>"#
                                 : #"fill="white" stroke="\#(skippedColor)" stroke-width="1.5"/>"#))
        }
        s.append("</g>")

        // Legend.
        let lx = left + plotW + 20
        let computedCount = entries.filter { $0.decision == .compute }.count
        s.append(#"<g id="legend">"#)
        let items: [(String, String)] = [
            (#"<line x1="0" y1="0" x2="22" y2="0" stroke="\#(rescaledColor)" stroke-width="2"/>"#, "rescaled P(d)"),
            (#"<line x1="0" y1="0" x2="22" y2="0" stroke="\#(accumulatorColor)" stroke-width="2"/>"#, "accumulator"),
            (#"<line x1="0" y1="0" x2="22" y2="0" stroke="\#(thresholdColor)" stroke-width="2" stroke-dasharray="6 4"/>"#,
             "threshold " + String(format: "%.3g", threshold)),
            (#"<circle cx="11" cy="0" r="4" fill="\#(computedColor)"/>"#, "computed (\(computedCount))"),
            (#"<circle cx="11" cy="0" r="4" fill="white" stroke="\#(skippedColor)" stroke-width="1.5"/>"#,
             "skipped (\(entries.count - computedCount))"),
        ]
        for (k, item) in items.enumerated() {
            let ly = top + 10 + Double(k) * 22
            s.append(#"<g transform="translate(\#(f(lx)) \#(f(ly)))">\#(item.0)<text x="30" y="4">\#(escape(item.1))</text></g>"#)
        }
        s.append("</g>")
        s.append("</svg>")
        return s.joined(separator: "\n") + "\n"
    }

    /// Runs of consecutive finite values, as (index, value) pairs.
    static func segments(_ values: [Double?]) -> [[(Int, Double)]] {
        var out: [[(Int, Double)]] = [], current: [(Int, Double)] = []
        for (i, v) in values.enumerated() {
            if let v, v.isFinite { current.append((i, v)) } else if !current.isEmpty {
                out.append(current)
                current = []
            }
        }
        if !current.isEmpty { out.append(current) }
        return out
    }

    /// XML text escaping.
    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}

/// Axis ticks at "nice" numbers (1, 2 or 5 times a power of ten) covering a range (Heckbert's
/// labelling: the range is widened to whole steps).
struct NiceTicks {
    /// The tick values, lowest first; the first and last are the widened range's ends.
    let values: [Double]
    /// The distance between ticks.
    let step: Double

    /// About `count` intervals covering `low ... high` (`high > low`, both finite).
    init(low: Double, high: Double, count: Int) {
        let range = Self.niceNumber(high - low, round: false)
        let step = Self.niceNumber(range / Double(max(count, 1)), round: true)
        let first = (low / step).rounded(.down), last = (high / step).rounded(.up)
        self.step = step
        values = stride(from: first, through: last, by: 1).map { $0 * step }
    }

    /// A tick's label with as many decimals as the step needs ("0.2", "15", "0.05").
    func label(_ v: Double) -> String {
        let decimals = max(0, Int(-(log10(step)).rounded(.down)))
        return String(format: "%.\(decimals)f", abs(v) < step / 2 ? 0 : v)
    }

    /// The nice number nearest `x` (`round`) or the smallest nice number ≥ `x`.
    static func niceNumber(_ x: Double, round: Bool) -> Double {
        guard x > 0, x.isFinite else { return 1 }
        let exponent = (log10(x)).rounded(.down)
        let fraction = x / pow(10, exponent)
        let nice: Double
        if round {
            nice = fraction < 1.5 ? 1 : fraction < 3 ? 2 : fraction < 7 ? 5 : 10
        } else {
            nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10
        }
        return nice * pow(10, exponent)
    }
}
