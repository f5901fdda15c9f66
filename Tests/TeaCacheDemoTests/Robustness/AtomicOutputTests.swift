import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import TeaCacheDemo

/// ``AtomicFile``: the final name only ever holds a complete file — after success, after a failing
/// writer, after the writing process is killed mid-write — and `teacache demo` killed at any moment
/// leaves only complete traces, charts, presets and reports at their final names.
@Suite struct AtomicOutputTests {
    static func scratch(_ name: String) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-atomic-\(name)-\(getpid())-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    static func listing(_ dir: URL) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).sorted()
    }

    /// A payload whose every byte depends on its position, so a truncated or mixed file is detected.
    static func payload(_ count: Int, salt: UInt8) -> Data {
        Data((0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) ^ salt })
    }

    @Test func writesTheWholeFileAndLeavesNothingElse() throws {
        let dir = try Self.scratch("write")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("trace.json")
        let first = Self.payload(100_003, salt: 1)
        try AtomicFile.write(first, to: url)
        #expect(try Data(contentsOf: url) == first)
        let second = Self.payload(17, salt: 2)
        try AtomicFile.write(second, to: url)
        #expect(try Data(contentsOf: url) == second)
        try AtomicFile.write(Data(), to: dir.appendingPathComponent("empty.txt"))
        // (The size from the file system: Foundation's Data(contentsOf:) leaks a buffer reading an empty file.)
        let size = try FileManager.default.attributesOfItem(atPath: dir.appendingPathComponent("empty.txt").path)[.size] as? Int
        #expect(size == 0)
        #expect(Self.listing(dir) == ["empty.txt", "trace.json"])
    }

    @Test func aFailingWriterKeepsThePreviousFileAndRemovesItsPartialFile() throws {
        let dir = try Self.scratch("fail")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("preset.json")
        let old = Self.payload(5000, salt: 3)
        try AtomicFile.write(old, to: url)
        #expect(throws: DemoError.io("stopped")) {
            try AtomicFile.write(to: url) { sink throws(DemoError) in
                try sink.append(Self.payload(4096, salt: 4))
                throw DemoError.io("stopped")
            }
        }
        #expect(try Data(contentsOf: url) == old)
        #expect(Self.listing(dir) == ["preset.json"])
    }

    @Test func anUnwritableFolderIsATypedErrorNamingThePath() throws {
        let url = URL(fileURLWithPath: "/nonexistent-teacache-folder/sub/chart.svg")
        do {
            try AtomicFile.write(Data("x".utf8), to: url)
            Issue.record("writing into a missing folder succeeded")
        } catch {
            guard case let .io(message) = error else { Issue.record("\(error)"); return }
            #expect(message.contains(url.path), "\(message)")
        }
    }

    /// The process writing a file is killed (SIGKILL) halfway through it: the final name still holds the
    /// previous complete file; only a `.partial-` file is left beside it.
    @Test func aProcessKilledMidWriteLeavesThePreviousFileAtTheFinalName() async throws {
        // The exit test's child finds the folder from its parent's pid (exit tests capture no values).
        let dir = AtomicOutputTests.killFolder(parent: getpid())
        try? FileManager.default.removeItem(at: dir)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("trace.json")
        let old = Self.payload(10_000, salt: 5)
        try AtomicFile.write(old, to: url)
        await #expect(processExitsWith: .signal(SIGKILL)) {
            let dir = AtomicOutputTests.killFolder(parent: getppid())
            try? AtomicFile.write(to: dir.appendingPathComponent("trace.json")) { sink throws(DemoError) in
                try sink.append(AtomicOutputTests.payload(1 << 20, salt: 6))
                kill(getpid(), SIGKILL)
                try sink.append(AtomicOutputTests.payload(1 << 20, salt: 7))
            }
            exit(0)  // not reached
        }
        #expect(try Data(contentsOf: url) == old)
        let others = Self.listing(dir).filter { $0 != "trace.json" }
        #expect(others.count == 1 && others[0].hasPrefix(".trace.json" + AtomicFile.partialMarker), "\(others)")
    }

    static func killFolder(parent: pid_t) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("teacache-atomic-kill-\(parent)")
    }

    /// `teacache demo` on a tiny model, killed at eight moments spread over a run's duration: after each
    /// kill, every file at a final name in the output folder is complete (JSON parses, a chart ends with
    /// `</svg>`, the report ends with its last line).
    @Test func theDemoKilledAtAnyMomentLeavesOnlyCompleteFiles() throws {
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("teacache")
        try #require(FileManager.default.isExecutableFile(atPath: executable.path), "build the teacache executable first")
        let dir = try Self.scratch("demo")
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("tiny.json")
        try Data(EndToEndTests.tinyConfig.utf8).write(to: config)
        let out = dir.appendingPathComponent("out")
        let arguments = ["demo", "--config", config.path, "--steps", "6", "--repeats", "1", "--thresholds", "0.05,0.2,0.5",
                         "--policy", "all", "--output", out.path]
        let start = Date()
        let full = try Self.run(executable, arguments, killAfter: nil)
        let duration = Date().timeIntervalSince(start)
        #expect(full == 0)
        let complete = Self.listing(out)
        #expect(complete.count > 10, "\(complete)")
        try Self.checkComplete(out)
        var killed = 0
        for k in 1...8 {
            let status = try Self.run(executable, arguments, killAfter: duration * Double(k) / 9)
            if status == -Int32(SIGKILL) { killed += 1 }
            try Self.checkComplete(out)
            // The final names are the complete run's, each still there.
            #expect(Set(Self.listing(out).filter { !$0.contains(AtomicFile.partialMarker) }) == Set(complete))
        }
        #expect(killed >= 4, "only \(killed) of 8 runs were still running when killed")
    }

    /// Runs the CLI (output discarded), killing it after `killAfter` seconds; the exit status, or minus
    /// the signal. (posix_spawn rather than Foundation's Process, which leaks a weak reference per run
    /// under LeakSanitizer.)
    static func run(_ executable: URL, _ arguments: [String], killAfter: Double?) throws -> Int32 {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd: Int32 in [0, 1, 2] { posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0) }
        let argv = ([executable.path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable.path, &actions, nil, argv, environ)
        try #require(rc == 0, "posix_spawn failed: \(rc)")
        let deadline = killAfter.map { Date().addingTimeInterval($0) }
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, deadline == nil ? 0 : WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { throw POSIXError(.ECHILD) }
            if let deadline, Date() >= deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            if deadline != nil { usleep(1000) }
        }
        return status & 0x7F == 0 ? (status >> 8) & 0xFF : -(status & 0x7F)
    }

    /// Every file at a final name in `dir` is complete for its kind.
    static func checkComplete(_ dir: URL) throws {
        for name in listing(dir) where !name.contains(AtomicFile.partialMarker) {
            let data = try Data(contentsOf: dir.appendingPathComponent(name))
            if name.hasSuffix(".json") {
                #expect((try? JSONSerialization.jsonObject(with: data)) != nil, "\(name) is not complete JSON")
            } else if name.hasSuffix(".svg") {
                #expect(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("</svg>"),
                        "\(name) is not a complete chart")
            } else if name == "demo-report.txt" {
                #expect(String(decoding: data, as: UTF8.self).contains("wall times:"), "\(name) is not a complete report")
            }
        }
    }
}
