import Foundation
import Testing
import Tensors
@testable import Safetensors
import TestSupport

/// Mutates valid files thousands of times with a seeded RNG. The reader must only ever throw a
/// `SafetensorsError` or succeed, and success must imply that every listed tensor loads.
@Suite struct FuzzTests {
    /// A small valid file exercising several dtypes, an unaligned tensor, a scalar, an empty tensor and metadata.
    static func mixedFile() throws -> [UInt8] {
        var w = SafetensorsWriter(metadata: ["format": "pt", "k": "v"])
        try w.addRaw(named: "a.u8", dtype: .u8, shape: [3], bytes: [1, 2, 3])
        try w.addRaw(named: "b.f16", dtype: .f16, shape: [2, 2], bytes: leBytes([UInt16(0x3C00), 0xC000, 0x7BFF, 0x0001]))
        try w.addRaw(named: "c.bf16", dtype: .bf16, shape: [3], bytes: leBytes([UInt16(0x3F80), 0xC0A0, 0x7F80]))
        try w.addRaw(named: "d.i64", dtype: .i64, shape: [2], bytes: leBytes([Int64(-7), 1 << 40]))
        try w.addRaw(named: "e.bool", dtype: .bool, shape: [2], bytes: [0, 1])
        try w.add(Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6]), named: "f.f32")
        try w.add(Tensor(scalar: 9), named: "g.scalar")
        try w.add(Tensor(zeros: [0, 4]), named: "h.empty")
        return [UInt8](w.serialized())
    }

    /// The header length from the prefix when it fits inside the file, else nil.
    static func headerLength(_ file: [UInt8]) -> Int? {
        guard file.count >= 8 else { return nil }
        var n: UInt64 = 0
        for i in 0..<8 { n |= UInt64(file[i]) << (8 * UInt64(i)) }
        return n <= UInt64(file.count - 8) ? Int(n) : nil
    }

    /// Applies `transform` to the header bytes and rewrites the length prefix to match.
    static func rewriteHeader(_ file: [UInt8], _ transform: (inout [UInt8]) -> Void) -> [UInt8] {
        guard let n = headerLength(file) else { return file }
        var header = Array(file[8..<(8 + n)])
        transform(&header)
        return makeFile(header: String(decoding: [], as: UTF8.self), payload: header + file[(8 + n)...],
                        headerLength: UInt64(header.count))
    }

    static func mutate(_ base: [UInt8], _ rng: inout SeededGenerator) -> [UInt8] {
        var f = base
        guard f.count >= 8 else { return f + [UInt8.random(in: 0...255, using: &rng)] }
        let headerEnd = headerLength(f).map { 8 + $0 } ?? f.count
        switch Int.random(in: 0..<7, using: &rng) {
        case 0:  // truncate
            f.removeLast(Int.random(in: 1...f.count, using: &rng))
        case 1:  // flip random bits, mostly inside the header
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let i = Bool.random(using: &rng) && headerEnd > 0 ? Int.random(in: 0..<headerEnd, using: &rng)
                                                                  : Int.random(in: 0..<f.count, using: &rng)
                f[i] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &rng)
            }
        case 2:  // rewrite the header length
            let choices: [UInt64] = [0, 1, 7, UInt64(headerEnd - 8) &+ 1, UInt64(headerEnd - 8) &- 1, UInt64(f.count),
                                     100_000_000, 100_000_001, UInt64(Int.max), 1 << 63, UInt64.max, rng.next()]
            let n = choices[Int.random(in: 0..<choices.count, using: &rng)]
            withUnsafeBytes(of: n.littleEndian) { for i in 0..<8 { f[i] = $0[i] } }
        case 3, 4:  // rewrite a number inside the header (offsets, shape dims), keeping the prefix consistent
            let replacements = ["0", "1", "-1", "4", "3", "65536", "4294967296", "9223372036854775807",
                                "9223372036854775808", "18446744073709551615", "18446744073709551616",
                                "2.0", "1e3", "-0", "999999999999999999999999"]
            let r = Array(replacements[Int.random(in: 0..<replacements.count, using: &rng)].utf8)
            let pick = Int.random(in: 0..<1000, using: &rng)
            f = rewriteHeader(f) { header in
                var runs: [Range<Int>] = []
                var i = 0
                while i < header.count {
                    if header[i] >= 0x30 && header[i] <= 0x39 {
                        let s = i
                        while i < header.count, header[i] >= 0x30 && header[i] <= 0x39 { i += 1 }
                        runs.append(s..<i)
                    } else { i += 1 }
                }
                guard !runs.isEmpty else { return }
                header.replaceSubrange(runs[pick % runs.count], with: r)
            }
        case 5:  // insert a structural character into the header
            let chars = Array("{}[]\",:\\ 0-".utf8)
            let c = chars[Int.random(in: 0..<chars.count, using: &rng)]
            let at = Int.random(in: 0..<1000, using: &rng)
            f = rewriteHeader(f) { header in
                guard !header.isEmpty else { return }
                if Bool.random(using: &rng) { header[at % header.count] = c } else { header.insert(c, at: at % header.count) }
            }
        default:  // append junk
            f += (0..<Int.random(in: 1...9, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        return f
    }

    @Test func mutatedFilesOnlyThrowOrFullyLoad() throws {
        let bases: [[UInt8]] = [
            try Self.mixedFile(),
            [UInt8](try Data(contentsOf: Fixtures.url("flux", "forward.safetensors"))),
        ]
        var rng = SeededGenerator(seed: 0x7EA_CAC4E)
        var opened = 0, rejected = 0, unloadable: [String] = []
        for iteration in 0..<10_000 {  // ~1 s in a debug build
            var bytes = bases[iteration % bases.count]
            for _ in 0..<Int.random(in: 1...2, using: &rng) { bytes = Self.mutate(bytes, &rng) }
            let file: SafetensorsFile
            do {
                file = try SafetensorsFile(bytes: bytes)
            } catch {
                rejected += 1
                #expect(!error.description.isEmpty)
                continue
            }
            opened += 1
            for info in file.tensors {
                #expect(try file.rawBytes(named: info.name).count == info.byteCount)
                guard info.dtype.isConvertibleToFloat else { continue }
                do {
                    let t = try file.tensor(named: info.name)
                    if t.shape != info.shape || t.count != info.elementCount { unloadable.append(info.name) }
                } catch {
                    unloadable.append("\(info.name): \(error)")
                }
            }
        }
        #expect(unloadable.isEmpty, "tensors listed but not loadable: \(unloadable.prefix(5))")
        // Both outcomes must occur, or the fuzzing is not exercising anything.
        #expect(opened > 200, "opened \(opened)")
        #expect(rejected > 5000, "rejected \(rejected)")
    }
}
