import Foundation
import TestSupport
@testable import Safetensors

/// Builds a safetensors buffer by hand: the 8-byte little-endian length, the header text, the payload.
/// `headerLength` overrides the length prefix (to test lying prefixes).
func makeFile(header: String, payload: [UInt8] = [], headerLength: UInt64? = nil) -> [UInt8] {
    let h = Array(header.utf8)
    var out: [UInt8] = []
    withUnsafeBytes(of: (headerLength ?? UInt64(h.count)).littleEndian) { out.append(contentsOf: $0) }
    out += h
    out += payload
    return out
}

/// A header entry string `"name":{"dtype":…,"shape":[…],"data_offsets":[b,e]}`.
func entry(_ name: String, _ dtype: String, _ shape: [Int], _ begin: Int, _ end: Int) -> String {
    "\"\(name)\":{\"dtype\":\"\(dtype)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(begin),\(end)]}"
}

/// Opens `bytes` and returns the thrown error (or nil when it opened).
func openError(_ bytes: [UInt8]) -> SafetensorsError? {
    do {
        _ = try SafetensorsFile(bytes: bytes)
        return nil
    } catch {
        return error
    }
}

/// Little-endian bytes of a fixed-width integer or float bit pattern.
func leBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var out: [UInt8] = []
    for v in values { withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) } }
    return out
}

