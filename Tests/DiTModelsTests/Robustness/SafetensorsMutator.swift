import Foundation
import Tensors

/// Seeded mutations of a safetensors file: its header JSON (shapes, offsets, dtypes, keys — through
/// ``JSONMutator``, with the length prefix kept consistent), the length prefix itself, truncation, and
/// data bytes (NaN, infinity or huge values written over a float); for int8 files (``mutateInt8(_:_:)``)
/// also the stored form's own parts: the group-size metadata, the `.scales` tensors and the I8 matrices.
enum SafetensorsMutator {
    static func headerLength(_ file: [UInt8]) -> Int? {
        guard file.count >= 8 else { return nil }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(file[i]) << (8 * UInt64(i)) }
        return n <= UInt64(file.count - 8) ? Int(n) : nil
    }

    static func withPrefix(_ length: UInt64, _ rest: ArraySlice<UInt8>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 8)
        for i in 0..<8 { out[i] = UInt8((length >> (8 * UInt64(i))) & 0xFF) }
        return out + rest
    }

    static func mutate(_ file: [UInt8], _ rng: inout SeededGenerator) -> (bytes: [UInt8], description: String) {
        guard let n = headerLength(file) else { return (file + [0], "appended a byte to an invalid file") }
        let header = Data(file[8..<(8 + n)])
        let data = file[(8 + n)...]
        switch Int.random(in: 0..<10, using: &rng) {
        case 0...4:
            guard let (h, what) = JSONMutator.mutate(header, &rng) else { return (file, "header unchanged") }
            return (withPrefix(UInt64(h.count), ArraySlice([UInt8](h)) + data), "header: \(what)")
        case 5:
            let k = Int.random(in: 1...max(1, file.count - 1), using: &rng)
            return (Array(file.prefix(file.count - k)), "truncated by \(k) bytes")
        case 6:
            let values: [UInt64] = [0, 1, UInt64(n) + 1, UInt64(n) &- 1, UInt64(file.count), 1 << 40, UInt64(Int.max), UInt64.max]
            let v = values[Int.random(in: 0..<values.count, using: &rng)]
            return (withPrefix(v, file[8...]), "length prefix → \(v)")
        default:
            guard data.count >= 4 else { return (file, "no data to change") }
            let bits: [UInt32] = [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x7F7F_FFFF, 0xFFFF_FFFF]
            let b = bits[Int.random(in: 0..<bits.count, using: &rng)]
            let at = 8 + n + 4 * Int.random(in: 0..<(data.count / 4), using: &rng)
            var out = file
            for i in 0..<4 { out[at + i] = UInt8((b >> (8 * UInt32(i))) & 0xFF) }
            return (out, String(format: "data word at %d → 0x%08X", at, b))
        }
    }

    /// A mutation of an int8 file in the stored form of `teacache quantize` (`I8` matrices, `<name>.scales`
    /// F32 tensors, the group size under `teacache.int8_group_size` in `__metadata__`): the group size
    /// (changed, not a number, removed, the metadata removed), a scales entry (its header fields through
    /// ``JSONMutator``, removed), scales values (NaN, ±infinity, 0, negative, huge, subnormal), an I8
    /// matrix's header (dtype, shape) or its values (−128, 127, 0). Falls back to ``mutate(_:_:)`` when the
    /// file has no int8 matrix.
    static func mutateInt8(_ file: [UInt8], _ rng: inout SeededGenerator) -> (bytes: [UInt8], description: String) {
        let metadataKey = "__metadata__", groupKey = "teacache.int8_group_size", suffix = ".scales"
        guard let n = headerLength(file),
              var header = try? JSONSerialization.jsonObject(with: Data(file[8..<(8 + n)])) as? [String: Any] else {
            return mutate(file, &rng)
        }
        let scales = header.keys.filter { $0.hasSuffix(suffix) && header[String($0.dropLast(suffix.count))] != nil }.sorted()
        guard !scales.isEmpty else { return mutate(file, &rng) }
        func pick<T>(_ xs: [T]) -> T { xs[Int.random(in: 0..<xs.count, using: &rng)] }
        let data = file[(8 + n)...]
        func rebuilt(_ header: [String: Any], _ what: String) -> (bytes: [UInt8], description: String) {
            guard let json = try? JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]) else { return (file, "header unchanged") }
            return (withPrefix(UInt64(json.count), ArraySlice([UInt8](json)) + data), what)
        }
        /// The absolute byte range of an entry's data, when its offsets are sane.
        func range(_ name: String) -> Range<Int>? {
            guard let entry = header[name] as? [String: Any], let o = entry["data_offsets"] as? [Int], o.count == 2,
                  0 <= o[0], o[0] <= o[1], o[1] <= data.count else { return nil }
            return (8 + n + o[0])..<(8 + n + o[1])
        }
        let scalesName = pick(scales)
        let weightName = String(scalesName.dropLast(suffix.count))
        switch Int.random(in: 0..<8, using: &rng) {
        case 0, 1:
            var metadata = header[metadataKey] as? [String: Any] ?? [:]
            let values: [String?] = [nil, "0", "-1", "1", "2", "16", "31", "32", "33", "63", "65", "128", "4096", "64.0", " 64", "0x40",
                                     "abc", "", "9223372036854775807", "9223372036854775808", "-9223372036854775808", "1e3"]
            let v = pick(values)
            metadata[groupKey] = v
            header[metadataKey] = metadata
            return rebuilt(header, "metadata \(groupKey) → \(v.map { "\"\($0)\"" } ?? "removed")")
        case 2:
            if Bool.random(using: &rng) {
                header[metadataKey] = nil
                return rebuilt(header, "__metadata__ removed")
            }
            header[scalesName] = nil
            return rebuilt(header, "\(scalesName) removed")
        case 3:
            let h = Data(file[8..<(8 + n)])
            guard let (m, what) = JSONMutator.mutate(h, &rng, restrict: { $0.first?.description == scalesName }) else { return (file, "header unchanged") }
            return (withPrefix(UInt64(m.count), ArraySlice([UInt8](m)) + data), "header: \(what)")
        case 4:
            guard var entry = header[weightName] as? [String: Any] else { return (file, "no weight entry") }
            let shape = entry["shape"] as? [Int] ?? []
            var shapes: [[Int]] = [shape.reversed(), [shape.reduce(1, *)], shape + [1], []]
            if shape.count == 2 { shapes += [[shape[0], shape[1] + 1], [shape[0] + 1, shape[1]], [shape[0], shape[1] * 2]] }
            if Bool.random(using: &rng) {
                let dtype = pick(["U8", "F32", "BF16", "F16", "I16", "F8_E4M3", "BOOL", "I4"])
                entry["dtype"] = dtype
                header[weightName] = entry
                return rebuilt(header, "\(weightName) dtype → \(dtype)")
            }
            let s = pick(shapes)
            entry["shape"] = s
            header[weightName] = entry
            return rebuilt(header, "\(weightName) shape → \(s)")
        case 5, 6:
            guard let r = range(scalesName), r.count >= 4 else { return (file, "no scales data") }
            let bits: [UInt32] = [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x0000_0000, 0x8000_0000, 0xBF80_0000, 0x7F7F_FFFF, 0x0000_0001]
            let b = pick(bits)
            let at = r.lowerBound + 4 * Int.random(in: 0..<(r.count / 4), using: &rng)
            var out = file
            for i in 0..<4 { out[at + i] = UInt8((b >> (8 * UInt32(i))) & 0xFF) }
            return (out, String(format: "%@ value at %d → 0x%08X", scalesName, at, b))
        default:
            guard let r = range(weightName), !r.isEmpty else { return (file, "no int8 data") }
            let v = pick([UInt8(0x80), 0x7F, 0x00, 0xFF])
            var out = file
            let count = Int.random(in: 1...min(8, r.count), using: &rng)
            for _ in 0..<count { out[Int.random(in: r, using: &rng)] = v }
            return (out, String(format: "%@: %d values → 0x%02X", weightName, count, v))
        }
    }
}
