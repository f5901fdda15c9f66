import Foundation
import Tensors

/// Seeded mutations of a safetensors file: its header JSON (shapes, offsets, dtypes, keys — through
/// ``JSONMutator``, with the length prefix kept consistent), the length prefix itself, truncation, and
/// data bytes (NaN, infinity or huge values written over a float).
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
}
