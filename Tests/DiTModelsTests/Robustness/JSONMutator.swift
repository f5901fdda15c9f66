import Foundation
import Tensors

/// Seeded mutations of a JSON document: one leaf (or container member) changed per call — numbers
/// scaled, negated, made huge, zero or fractional; values replaced by another type; keys removed; array
/// elements dropped or duplicated.
enum JSONMutator {
    /// A path to a value: object keys and array indices.
    enum Step: CustomStringConvertible {
        case key(String)
        case index(Int)
        var description: String {
            switch self {
            case .key(let k): return k
            case .index(let i): return "[\(i)]"
            }
        }
    }

    /// Every path in `value` (containers and leaves), with at most `limit` elements taken per array so
    /// long call lists do not drown the configuration values.
    static func paths(_ value: Any, prefix: [Step] = [], limit: Int = 4) -> [[Step]] {
        var out: [[Step]] = prefix.isEmpty ? [] : [prefix]
        if let d = value as? [String: Any] {
            for k in d.keys.sorted() { out += paths(d[k]!, prefix: prefix + [.key(k)], limit: limit) }
        } else if let a = value as? [Any] {
            for i in a.indices.prefix(limit) { out += paths(a[i], prefix: prefix + [.index(i)], limit: limit) }
        }
        return out
    }

    /// A mutated copy of `data` (a JSON object), or nil when it does not parse. `restrict` keeps only the
    /// paths it accepts (e.g. under `"config"`). The description says what changed.
    static func mutate(_ data: Data, _ rng: inout SeededGenerator,
                       restrict: ([Step]) -> Bool = { _ in true }) -> (data: Data, description: String)? {
        guard let root = try? JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed]) else { return nil }
        let candidates = paths(root).filter(restrict)
        guard !candidates.isEmpty else { return nil }
        let path = candidates[Int.random(in: 0..<candidates.count, using: &rng)]
        var what = ""
        let mutated = update(root, path[...]) { old in
            let (new, label) = replacement(for: old, &rng)
            what = label
            return new
        }
        guard let out = try? JSONSerialization.data(withJSONObject: mutated, options: [.fragmentsAllowed]) else { return nil }
        return (out, "\(path.map(\.description).joined(separator: ".")) \(what)")
    }

    /// `nil` from `transform` removes the member.
    private static func update(_ value: Any, _ path: ArraySlice<Step>, _ transform: (Any) -> Any?) -> Any {
        guard let step = path.first else { return transform(value) ?? NSNull() }
        switch (step, value) {
        case let (.key(k), d as [String: Any]):
            var d = d
            if path.count == 1 { d[k] = transform(d[k] as Any) } else if let child = d[k] { d[k] = update(child, path.dropFirst(), transform) }
            return d
        case let (.index(i), a as [Any]) where a.indices.contains(i):
            var a = a
            if path.count == 1 {
                if let v = transform(a[i]) { a[i] = v } else { a.remove(at: i) }
            } else {
                a[i] = update(a[i], path.dropFirst(), transform)
            }
            return a
        default:
            return value
        }
    }

    private static var hugeNumbers: [Any] { [
        1e300, -1e300, 4611686018427387904 as Int, Int.max, Int.min, 65536, 65537, 1 << 20, 1 << 31, 1 << 32,
    ] }
    private static var otherTypes: [Any] { ["x", "", [Any](), [String: Any](), NSNull(), true, false, [1, 2, 3]] }

    /// JSONSerialization's booleans are NSNumbers of type `c` (`char`); its numbers are not.
    private static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// The new value (nil: remove) and a label.
    private static func replacement(for old: Any, _ rng: inout SeededGenerator) -> (Any?, String) {
        let pick = Int.random(in: 0..<10, using: &rng)
        if pick == 0 { return (nil, "removed") }
        if pick == 1 { let v = otherTypes[Int.random(in: 0..<otherTypes.count, using: &rng)]; return (v, "→ \(v)") }
        if let n = old as? NSNumber, !isBoolean(n) {
            let x = n.doubleValue
            let isInt = x == x.rounded() && abs(x) < 1e15
            let options: [(Any, String)] = [
                (isInt ? Int(x) * 2 as Any : x * 2, "×2"), (isInt ? -Int(x) as Any : -x, "negated"), (0, "→ 0"),
                (isInt ? Int(x) + 1 as Any : x + 1, "+1"), (isInt ? max(Int(x) - 1, -1) as Any : x - 1, "−1"),
                (isInt ? Int(x) * 1000 as Any : x * 1000, "×1000"), (x + 0.5, "+0.5"),
                (hugeNumbers[Int.random(in: 0..<hugeNumbers.count, using: &rng)], "→ huge"),
            ]
            let (v, label) = options[Int.random(in: 0..<options.count, using: &rng)]
            return (v, label)
        }
        if let a = old as? [Any], !a.isEmpty {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: return (Array(a.dropLast()), "last element dropped")
            case 1: return (a + [a[a.count - 1]], "last element repeated")
            default: return ([Any](), "emptied")
            }
        }
        if old is String { return (["", "unknown", "sigma", "gelu", "rms_norm"][Int.random(in: 0..<5, using: &rng)], "→ other string") }
        if let n = old as? NSNumber, isBoolean(n) { return (!n.boolValue, "flipped") }
        let v = otherTypes[Int.random(in: 0..<otherTypes.count, using: &rng)]
        return (v, "→ \(v)")
    }
}
