import Foundation
import Tensors

/// Writes a safetensors file whose tensors are streamed from where they already are (weight matrices
/// in their own storage, float32 tensors), so a checkpoint of any size is written without a second
/// copy in memory. The file appears under its final name only when complete: it is written to a
/// temporary name in the same folder and renamed.
///
/// The layout is ``SafetensorsWriter``'s: sorted names, contiguous offsets, the header padded to 8 bytes.
public struct SafetensorsStreamWriter {
    private enum Payload {
        case tensor(Tensor)
        case buffer(WeightBuffer)
    }

    private var entries: [String: (dtype: SafetensorsDType, shape: [Int], payload: Payload)] = [:]
    /// String metadata stored under `__metadata__`.
    public var metadata: [String: String]

    /// An empty writer.
    public init(metadata: [String: String] = [:]) { self.metadata = metadata }

    /// Adds a float32 tensor (stored as F32).
    /// - Throws: ``SafetensorsError/invalidWriterInput(tensor:reason:)`` for a reserved or repeated name.
    public mutating func add(_ tensor: Tensor, named name: String) throws(SafetensorsError) {
        try insert(name, .f32, tensor.shape, .tensor(tensor))
    }

    /// Adds a weight matrix in its own storage (``Int8WeightFormat`` for int8).
    /// - Throws: ``SafetensorsError/invalidWriterInput(tensor:reason:)`` for a reserved or repeated name, or
    ///   an int8 group size other than the file's.
    public mutating func add(_ matrix: WeightMatrix, named name: String) throws(SafetensorsError) {
        switch matrix.storage {
        case .float32(let t): try insert(name, .f32, matrix.shape, .tensor(t))
        case .bfloat16(let b): try insert(name, .bf16, matrix.shape, .buffer(b))
        case .float16(let b): try insert(name, .f16, matrix.shape, .buffer(b))
        case .int8(let v, let scales, let g):
            if let recorded = metadata[Int8WeightFormat.groupSizeKey], recorded != String(g) {
                throw .invalidWriterInput(tensor: name, reason: "int8 group size \(g) differs from the file's \(recorded)")
            }
            metadata[Int8WeightFormat.groupSizeKey] = String(g)
            try insert(name, .i8, matrix.shape, .buffer(v))
            try insert(name + Int8WeightFormat.scalesSuffix, .f32, scales.shape, .tensor(scales))
        }
    }

    private mutating func insert(_ name: String, _ dtype: SafetensorsDType, _ shape: [Int], _ payload: Payload) throws(SafetensorsError) {
        try SafetensorsWriter.checkName(name, isNew: entries[name] == nil)
        entries[name] = (dtype, shape, payload)
    }

    /// Writes the file to `url` (through a temporary file in the same folder, renamed when complete).
    /// - Throws: ``SafetensorsError/fileUnwritable(path:reason:)``.
    public func write(to url: URL) throws(SafetensorsError) {
        let order = entries.keys.sorted()
        func byteCount(_ p: Payload) -> Int {
            switch p {
            case .tensor(let t): return 4 * t.count
            case .buffer(let b): return b.byteCount
            }
        }
        let header = SafetensorsWriter.header(metadata: metadata, entries: order.compactMap { name in
            entries[name].map { (name, $0.dtype, $0.shape, byteCount($0.payload)) }
        })
        let temporary = url.deletingLastPathComponent()
            .appendingPathComponent(".\(url.lastPathComponent).partial-\(ProcessInfo.processInfo.processIdentifier)")
        do {
            guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
                throw SafetensorsError.fileUnwritable(path: url.path, reason: "cannot create \(temporary.lastPathComponent) in its folder")
            }
            let handle = try FileHandle(forWritingTo: temporary)
            defer { try? handle.close() }  // closing after a failed write adds nothing to report
            try handle.write(contentsOf: header)
            for name in order {
                guard let e = entries[name] else { continue }
                switch e.payload {
                case .tensor(let t):
                    try t.withUnsafeBufferPointer { try handle.write(contentsOf: Data(buffer: $0)) }
                case .buffer(let b):
                    // Borrowed (mapped) or owned bytes, written without copying.
                    try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: b.baseAddress),
                                                      count: b.byteCount, deallocator: .none))
                }
            }
            try handle.synchronize()
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: temporary, to: url)
        } catch let error as SafetensorsError {
            try? FileManager.default.removeItem(at: temporary)  // best effort: the error says what failed
            throw error
        } catch {
            try? FileManager.default.removeItem(at: temporary)  // best effort: the error says what failed
            throw .fileUnwritable(path: url.path, reason: (error as NSError).localizedDescription)
        }
    }
}
