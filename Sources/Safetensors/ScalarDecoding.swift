/// Conversions from the stored little-endian element formats to Float32.
///
/// Every read goes through `loadUnaligned`/`copyMemory`, because safetensors offsets carry no
/// alignment guarantee (an F32 tensor may follow a 3-byte U8 tensor).
enum ScalarDecoding {
    /// Converts IEEE 754 binary16 bits to Float32 exactly (every half value is representable).
    static func float(fromHalfBits h: UInt16) -> Float {
        let sign: Float = (h & 0x8000) != 0 ? -1 : 1
        let exponent = UInt32((h >> 10) & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        switch exponent {
        case 0:
            // Zero or subnormal: mantissa × 2^-24, exact in Float32.
            return sign * Float(mantissa) * 0x1p-24
        case 0x1F:
            let signBit = UInt32(h & 0x8000) << 16
            return Float(bitPattern: signBit | 0x7F80_0000 | mantissa << 13)
        default:
            let signBit = UInt32(h & 0x8000) << 16
            return Float(bitPattern: signBit | (exponent + 112) << 23 | mantissa << 13)
        }
    }

    /// Converts bfloat16 bits to Float32 exactly (bfloat16 is the top half of a Float32).
    static func float(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// Decodes `count` elements of `dtype` from `source` into `destination`.
    /// - Precondition (checked by the caller): `source.count == count * dtype.bitSize / 8`,
    ///   `destination.count == count`, and `dtype.isConvertibleToFloat`.
    static func decode(
        _ source: UnsafeRawBufferPointer,
        dtype: SafetensorsDType,
        count: Int,
        into destination: UnsafeMutableBufferPointer<Float>
    ) {
        switch dtype {
        case .f32:
            #if _endian(little)
            UnsafeMutableRawBufferPointer(destination).copyMemory(from: source)
            #else
            for i in 0..<count {
                destination[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
            }
            #endif
        case .f16:
            for i in 0..<count {
                destination[i] = float(fromHalfBits: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .bf16:
            for i in 0..<count {
                destination[i] = float(fromBFloat16Bits: UInt16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
            }
        case .f64:
            for i in 0..<count {
                let bits = UInt64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
                destination[i] = Float(Double(bitPattern: bits))
            }
        case .i64:
            for i in 0..<count {
                destination[i] = Float(Int64(littleEndian: source.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
            }
        case .i32:
            for i in 0..<count {
                destination[i] = Float(Int32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
            }
        case .bool:
            for i in 0..<count { destination[i] = source[i] != 0 ? 1 : 0 }
        default:
            // Unreachable: callers check `isConvertibleToFloat` first. Leave a defined value anyway.
            destination.update(repeating: .nan)
        }
    }
}
