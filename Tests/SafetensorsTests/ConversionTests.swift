import Foundation
import Testing
import Tensors
@testable import Safetensors

/// dtype → Float32 conversion against hand-computed bit patterns.
@Suite struct ConversionTests {
    private func load(_ dtype: SafetensorsDType, shape: [Int], bytes: [UInt8]) throws -> Tensor {
        var w = SafetensorsWriter()
        try w.addRaw(named: "t", dtype: dtype, shape: shape, bytes: bytes)
        return try SafetensorsFile(data: w.serialized()).tensor(named: "t")
    }

    @Test func f16() throws {
        // 0x3C00 = 1, 0xC000 = -2, 0x3555 ≈ 0.33325195 (= 1365/4096), 0x7BFF = 65504 (max),
        // 0x0001 = 2^-24 (smallest subnormal), 0x03FF = 1023·2^-24, 0x8000 = -0, 0x7C00 = +inf, 0xFC00 = -inf.
        let bits: [UInt16] = [0x3C00, 0xC000, 0x3555, 0x7BFF, 0x0001, 0x03FF, 0x8000, 0x7C00, 0xFC00, 0x7E00]
        let t = try load(.f16, shape: [2, 5], bytes: leBytes(bits))
        #expect(t.shape == [2, 5])
        let s = t.scalars
        #expect(Array(s[0..<4]) == [1, -2, 1365.0 / 4096.0, 65504])
        #expect(s[4] == 0x1p-24)
        #expect(s[5] == 1023 * 0x1p-24)
        #expect(s[6] == 0 && s[6].sign == .minus)
        #expect(s[7] == .infinity && s[8] == -.infinity)
        #expect(s[9].isNaN)
    }

    @Test func f16ConversionAgreesWithSwiftFloat16ForEveryBitPattern() {
        #if arch(x86_64) || arch(arm64)
        // Float16 → Float widening is exact, so the bit patterns must agree (NaN payloads aside).
        let mismatches = (UInt16.min...UInt16.max).filter { bits in
            let ours = ScalarDecoding.float(fromHalfBits: bits)
            let swift = Float(Float16(bitPattern: bits))
            return !(ours.bitPattern == swift.bitPattern || (ours.isNaN && swift.isNaN))
        }
        #expect(mismatches.isEmpty, "first mismatching bits: \(mismatches.prefix(5))")
        #endif
    }

    @Test func bf16() throws {
        // BF16 is the top 16 bits of a Float32: 0x3F80 = 1, 0xC0A0 = -5, 0x3EAA = 0.33203125, 0x7F80 = inf, 0x0001 = 2^-133.
        let bits: [UInt16] = [0x3F80, 0xC0A0, 0x3EAA, 0x7F80, 0x0001]
        let s = try load(.bf16, shape: [5], bytes: leBytes(bits)).scalars
        #expect(s == [1, -5, 0.33203125, .infinity, 0x1p-133])
    }

    @Test func i64I32F64AndBool() throws {
        let i64 = try load(.i64, shape: [4], bytes: leBytes([Int64(0), -1, 1 << 40, Int64.max])).scalars
        #expect(i64 == [0, -1, 1_099_511_627_776, 0x1p63])  // Int64.max rounds to the nearest Float, 2^63
        let i32 = try load(.i32, shape: [3], bytes: leBytes([Int32(7), -123_456, Int32.min])).scalars
        #expect(i32 == [7, -123_456, -2_147_483_648])
        let f64 = try load(.f64, shape: [3], bytes: leBytes([(0.1 as Double).bitPattern, (-1e300 as Double).bitPattern, (3.0 as Double).bitPattern])).scalars
        #expect(f64 == [0.1, -.infinity, 3])  // rounds to nearest; -1e300 overflows Float to -inf
        let bools = try load(.bool, shape: [2, 2], bytes: [0, 1, 1, 0]).scalars
        #expect(bools == [0, 1, 1, 0])
    }

    @Test func unalignedF32AfterAThreeByteTensor() throws {
        // "a" is 3 U8 bytes, so "b" (F32) starts at data offset 3: not 4-byte aligned.
        let values: [Float] = [1.5, -2.25, 0x1p-140]  // the last is a Float32 subnormal
        let header = "{" + entry("a", "U8", [3], 0, 3) + "," + entry("b", "F32", [3], 3, 15) + "}"
        let file = try SafetensorsFile(bytes: makeFile(header: header, payload: [9, 9, 9] + leBytes(values.map(\.bitPattern))))
        #expect(try file.tensor(named: "b").scalars.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(try file.rawBytes(named: "a") == [9, 9, 9])
    }

    @Test(arguments: [SafetensorsDType.u8, .i8, .u16, .i16, .u32, .u64, .c64, .f8E4M3, .f8E5M2])
    func dtypesWithoutFloatConversionThrowNamingTheTensor(dtype: SafetensorsDType) throws {
        var w = SafetensorsWriter()
        try w.addRaw(named: "weird", dtype: dtype, shape: [2], bytes: [UInt8](repeating: 0, count: 2 * dtype.bitSize / 8))
        let file = try SafetensorsFile(data: w.serialized())
        #expect(try file.info(named: "weird").dtype == dtype)  // still listed
        #expect(throws: SafetensorsError.unsupportedDType(tensor: "weird", dtype: dtype.rawValue)) {
            try file.tensor(named: "weird")
        }
    }

    @Test func missingTensorThrows() throws {
        let file = try SafetensorsFile(data: SafetensorsWriter.serialize([:]))
        #expect(file.names.isEmpty)
        #expect(throws: SafetensorsError.tensorNotFound("nope")) { try file.tensor(named: "nope") }
    }
}
