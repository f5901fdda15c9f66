import Foundation
import Testing

/// The `teacache` executable as a user runs it: every failure is one `error: <what>: <why>; <what to do>`
/// line on stderr with no Foundation error dump, usage problems exit 64 and failures while running exit
/// 1, long mismatch lists are summarised (in full at `--log-level debug`), and a very long demo says how
/// long it will take before it starts.
@Suite struct ErrorMessageTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The `teacache` built beside the test bundle (or in `.build/debug`).
    static var executable: URL {
        let besideTests = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("teacache")
        if FileManager.default.isExecutableFile(atPath: besideTests.path) { return besideTests }
        return repository.appendingPathComponent(".build/debug/teacache")
    }

    /// Runs `teacache arguments`; returns the exit status, stdout and stderr.
    static func teacache(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        process.currentDirectoryURL = repository
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read both pipes while the process runs, so neither can fill up and block it.
        // The semaphore orders the reader's write before the read below (polling `isFinished` did not,
        // which ThreadSanitizer reported as a race).
        nonisolated(unsafe) var errData = Data()
        let errRead = DispatchSemaphore(value: 0)
        let reader = Thread {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            errRead.signal()
        }
        reader.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        errRead.wait()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    static let flux = "Tests/Fixtures/flux"

    @Test(arguments: [
        // Usage: the command line itself (bad values, unknown options, missing files named by options).
        (["demo", "--steps", "0"], 64, "--steps 0: must be at least 1; give"),
        (["demo", "--threads", "0"], 64, "--threads 0: must be between 1 and"),
        (["demo", "--memory-budget", "0"], 64, "--memory-budget 0: must be a positive number"),
        (["demo", "--thresholds", "-1"], 64, "threshold -1: must be a finite number >= 0"),
        (["demo", "--repeats", "0"], 64, "--repeats 0: must be at least 1"),
        (["demo", "--bogus"], 64, "Unknown option '--bogus'; see 'teacache demo --help'"),
        (["demo", "--model", "tangoflux2"], 64, "--model tangoflux2: unknown model; use one of flux, tangoflux,"),
        (["demo", "--preset", "wan21_t2v"], 64, "--preset wan21_t2v: no built-in preset or file of that name; give"),
        (["demo", "--preset", "/nonexistent/preset.json"], 64, "--preset /nonexistent/preset.json: not found; give"),
        (["demo", "--preset", "Tests"], 64, "--preset Tests: is a directory; give"),
        (["demo", "--config", "/nonexistent/config.json"], 64, "--config /nonexistent/config.json: not found; give"),
        (["demo", "--config", "Tests"], 64, "--config Tests: is a directory; give"),
        (["demo", "--weights", "/nonexistent"], 64, "--weights /nonexistent: not found; give"),
        (["calibrate", "--output", "Tests"], 64, "--output Tests: is a directory; give a file path"),
        (["calibrate", "--seeds", "0"], 64, "--seeds 0: must be at least 1; give"),
        (["bench", "forward", "--config", "/nonexistent.json"], 64, "--config /nonexistent.json: not found; give a benchmark file"),
        (["bench", "forward", "--config", "Tests"], 64, "--config Tests: is a directory; give a benchmark file"),
        (["inspect", "/nonexistent.safetensors"], 64, "/nonexistent.safetensors': no such file"),
        (["verify", "/nonexistent"], 64, "verify /nonexistent: not found; give a fixture folder"),
        (["verify", "README.md"], 64, "verify README.md: not a folder; give a fixture folder"),
        (["quantize", "--config", "/nonexistent.json", "--weights", "Tests", "--output", "/tmp/q.safetensors"], 64,
         "--config /nonexistent.json: not found; give the model's config.json"),
        (["quantize", "--config", "Tests/Fixtures/flux/config.json", "--weights", "/nonexistent", "--output", "/tmp/q.safetensors"], 64,
         "--weights /nonexistent: not found; give a .safetensors file"),
        // Runtime: the files are there but wrong.
        (["inspect", "Tests/Fixtures/flux/config.json"], 1, "Tests/Fixtures/flux/config.json: header length"),
        (["quantize", "--config", "Tests/Fixtures/wan21/config.json", "--weights", "Tests/Fixtures/flux/model.safetensors",
          "--output", "/tmp/teacache-quantize-test.safetensors", "--precision", "int8"], 1, "the weights do not match the configuration: 40 missing"),
        (["demo", "--model", "wan21", "--config", "Tests/Fixtures/flux/config.json"], 1,
         "is for class FluxTransformer2DModel, expected WanTransformer3DModel"),
    ] as [([String], Int32, String)])
    func everyErrorIsOneLineInOneStyle(arguments: [String], status: Int32, expected: String) throws {
        let result = try Self.teacache(arguments)
        #expect(result.status == status, "\(arguments): \(result.stderr)")
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1, "\(arguments): one line, got \(result.stderr)")
        #expect(result.stderr.hasPrefix("error: ") && result.stderr.contains(expected), "\(arguments): \(result.stderr)")
        for dump in ["NSCocoaErrorDomain", "Code=", "error 256", "error 260", "UserInfo", "Error: ", "Usage:", "couldn’t", "could not be completed"] {
            #expect(!result.stderr.contains(dump), "\(arguments): \(result.stderr)")
        }
    }

    /// A config/weights mismatch names counts and the first three names of each list; the full list is
    /// logged at debug level.
    @Test func mismatchListsAreSummarised() throws {
        let arguments = ["demo", "--config", "\(Self.flux)/config.json", "--weights", "Tests/Fixtures/wan21/model.safetensors", "--steps", "2"]
        let short = try Self.teacache(arguments)
        #expect(short.status == 1)
        let line = short.stderr.trimmingCharacters(in: .newlines)
        #expect(line.contains("the weights do not match the configuration: 64 missing (context_embedder.bias, context_embedder.weight, norm_out.linear.bias, …), 40 unexpected ("), "\(line)")
        #expect(line.contains("; check that --config and --weights belong to the same model (the full list with --log-level debug)"))
        #expect(line.count < 600, "\(line.count) characters")
        let full = try Self.teacache(arguments + ["--log-level", "debug"])
        #expect(full.stderr.contains("in full: ") && full.stderr.contains("proj_out.weight") && full.stderr.contains("blocks.0.ffn.net.2.weight"),
                "\(full.stderr)")
    }

    @Test func versionAndHelpExitZero() throws {
        let version = try Self.teacache(["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("0.1.0"))
        let help = try Self.teacache(["demo", "--help"])
        #expect(help.status == 0 && help.stdout.contains("--preset"))
    }

    /// `demo --steps 1000000` prints its estimate before the first timed run (the test stops it there).
    @Test func aVeryLongDemoAnnouncesItsDuration() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("estimate-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("tiny.json")
        try Data("""
            {"class": "FluxTransformer2DModel",
             "config": {"patch_size": 1, "in_channels": 4, "num_layers": 1, "num_single_layers": 1,
                        "attention_head_dim": 8, "num_attention_heads": 2, "joint_attention_dim": 16,
                        "pooled_projection_dim": 8, "guidance_embeds": true, "axes_dims_rope": [2, 2, 4]},
             "inputs": {"batch": 1, "latent_height": 4, "latent_width": 4, "text_tokens": 4}}
            """.utf8).write(to: config)
        let process = Process()
        process.executableURL = Self.executable
        process.arguments = ["demo", "--config", config.path, "--steps", "1000000", "--output", dir.appendingPathComponent("out").path]
        let err = Pipe()
        process.standardError = err
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        // A watchdog, so a missing estimate fails the test instead of hanging it.
        let pid = process.processIdentifier
        DispatchQueue.global().asyncAfter(deadline: .now() + 120) { kill(pid, SIGKILL) }
        var text = ""
        while !text.contains("\n") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        // SIGKILL: a child of the test runner may inherit a mask that blocks SIGTERM.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        let first = text.split(separator: "\n").first.map(String.init) ?? text
        #expect(first.hasPrefix("estimate: 14 runs × 1000000 steps × 1 call = 14,000,000 forwards of "), "\(first)")
        #expect(first.contains(": at most ") && first.hasSuffix("press Ctrl-C to stop, or lower --steps or --repeats"), "\(first)")
    }
}
