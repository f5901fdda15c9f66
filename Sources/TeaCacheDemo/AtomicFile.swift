import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a file so that its final name only ever holds a complete file: the bytes go to a temporary
/// name in the same folder (`.<name>.partial-<pid>-<random>`), are flushed to disk, and the temporary
/// file is renamed over the final name in one step (`rename(2)`, atomic within a file system).
///
/// Every file `teacache demo` and `teacache calibrate` write (traces, charts, presets, the report) goes
/// through it. A run killed mid-write leaves the previous file (or none) at the final name, and at worst
/// a `.partial-` file beside it, never a truncated trace or preset that a later run would read.
public enum AtomicFile {
    /// The prefix and infix of temporary names: `.<name>.partial-…`.
    public static let partialMarker = ".partial-"

    /// Writes `data` to `url` atomically.
    /// - Throws: ``DemoError/io(_:)`` naming the path and the system's reason (the temporary file is removed).
    public static func write(_ data: Data, to url: URL) throws(DemoError) {
        try write(to: url) { sink throws(DemoError) in try sink.append(data) }
    }

    /// Streams a file to `url` atomically: `body` appends the contents through the sink; the file appears
    /// at `url` only when `body` returns and the bytes are on disk.
    /// - Throws: ``DemoError/io(_:)``, or what `body` throws (the temporary file is removed either way).
    public static func write(to url: URL, _ body: (Sink) throws(DemoError) -> Void) throws(DemoError) {
        let folder = url.deletingLastPathComponent()
        let temporary = folder.appendingPathComponent(
            ".\(url.lastPathComponent)\(partialMarker)\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .io("cannot write \(url.path): cannot create \(temporary.lastPathComponent) in \(folder.path): \(Self.reason())") }
        var closed = false
        var renamed = false
        defer {
            if !closed { _ = close(fd) }
            if !renamed { _ = unlink(temporary.path) }
        }
        try body(Sink(fd: fd, path: url.path))
        guard fsync(fd) == 0 else { throw .io("cannot write \(url.path): flushing to disk failed: \(Self.reason())") }
        closed = true
        guard close(fd) == 0 else { throw .io("cannot write \(url.path): \(Self.reason())") }
        guard rename(temporary.path, url.path) == 0 else {
            throw .io("cannot write \(url.path): renaming \(temporary.lastPathComponent) failed: \(Self.reason())")
        }
        renamed = true
    }

    /// Appends bytes to the temporary file of ``AtomicFile/write(to:_:)``.
    public struct Sink {
        let fd: Int32
        let path: String

        /// Appends `data` (all of it, retrying short writes and interruptions).
        public func append(_ data: Data) throws(DemoError) {
            var failure: Int32 = 0
            data.withUnsafeBytes { raw in
                var offset = 0
                while offset < raw.count {
                    let n = systemWrite(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        failure = errno
                        return
                    }
                    offset += n
                }
            }
            if failure != 0 { throw .io("cannot write \(path): \(String(cString: strerror(failure)))") }
        }
    }

    private static func reason() -> String { String(cString: strerror(errno)) }
}

/// `write(2)` (the name `write` is taken by ``AtomicFile/write(_:to:)`` inside the enum).
private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
