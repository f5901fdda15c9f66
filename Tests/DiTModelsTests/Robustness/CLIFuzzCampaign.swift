import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Safetensors
import TeaCache
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The fuzz campaign through the `teacache` executable: `scripts/fuzz.sh N` runs N mutated cases per input
/// kind, each case one or two CLI runs in a child process with an address-space cap and a time limit.
///
/// Mutations are the ones of ``FixtureFuzzTests`` (``JSONMutator``, ``SafetensorsMutator``); the input
/// kinds and the commands that read them are in ``CLIFuzzKind``. Every child ends as
/// - **success**: exit 0;
/// - **typed error**: exit 1 (a failure while running) or 64 (a problem with the command line, such as a
///   file given to an option that cannot be used) with the CLI's own `error: …` line on stderr (the
///   description of one of the package's error enums), or `verify …: FAIL` (a failed check);
/// - **untyped**: any other exit status, or exit 1 without such a line (e.g. ArgumentParser's `Error:` for
///   an error that escaped the command);
/// - **crash**: killed by a signal (a Swift trap, a segfault, an allocation refused by the cap);
/// - **hang**: still running at the time limit (killed).
///
/// The kinds take turns case by case, so a campaign stopped early has covered every kind equally. The
/// table (cases, typed errors, successes, untyped, crashes, hangs, the largest child's peak RSS, sampled) is
/// printed and written to `FUZZ_REPORT` every 20 rounds; a crash, hang or untyped ending fails the test
/// and keeps its inputs under `FUZZ_KEEP` (default: the temporary folder) to reproduce it.
///
/// Environment: `FUZZ_CLI_CASES` (cases per kind; the test is skipped without it), `FUZZ_SEED` (1),
/// `FUZZ_KINDS` (comma list, default all), `FUZZ_TIMEOUT` (seconds per child, 60),
/// `FUZZ_ADDRESS_SPACE_GB` (4), `FUZZ_TEACACHE` (the executable; default `teacache` next to the test bundle),
/// `FUZZ_KEEP_SEEDS` (set: keep the unmutated inputs in the temporary folder).
@Suite struct CLIFuzzCampaign {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    @Test(.enabled(if: environment["FUZZ_CLI_CASES"] != nil, "set FUZZ_CLI_CASES (scripts/fuzz.sh N)"))
    func mutatedInputsThroughTheCLIEndInSuccessOrATypedError() throws {
        let env = Self.environment
        let cases = Int(env["FUZZ_CLI_CASES"] ?? "") ?? 0
        let seed = env["FUZZ_SEED"].flatMap(UInt64.init) ?? 1
        let kinds = try env["FUZZ_KINDS"].map { list in
            try list.split(separator: ",").map { name in
                try #require(CLIFuzzKind(rawValue: String(name)), "unknown kind \(name); kinds: \(CLIFuzzKind.allCases)")
            }
        } ?? CLIFuzzKind.allCases
        let limits = ChildLimits(seconds: env["FUZZ_TIMEOUT"].flatMap(Double.init) ?? 60,
                                 addressSpaceBytes: Int((env["FUZZ_ADDRESS_SPACE_GB"].flatMap(Double.init) ?? 4) * 1_073_741_824))
        let executable = env["FUZZ_TEACACHE"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("teacache")
        try #require(FileManager.default.isExecutableFile(atPath: executable.path), "no teacache executable at \(executable.path)")

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-cli-fuzz-\(getpid())")
        let keep = URL(fileURLWithPath: env["FUZZ_KEEP"] ?? work.appendingPathComponent("failures").path)
        try? FileManager.default.removeItem(at: work)
        defer { if env["FUZZ_KEEP_SEEDS"] == nil { try? FileManager.default.removeItem(at: work.appendingPathComponent("seeds")) } }
        let seeds = try CLIFuzzSeeds(root: work.appendingPathComponent("seeds"))
        var tally = [CLIFuzzKind: CLIFuzzTally]()
        var failures: [String] = []
        var rng = SeededGenerator(seed: seed)
        let start = Date()
        for round in 0..<cases {
            for kind in kinds {
                let dir = work.appendingPathComponent("case")
                try? FileManager.default.removeItem(at: dir)
                try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                let prepared = try kind.prepare(in: dir, seeds: seeds, rng: &rng)
                var worst = CLIFuzzOutcome.success
                var peak = 0
                var detail = ""
                for arguments in prepared.runs {
                    let run = ChildRun.run(executable.path, arguments, limits: limits, folder: dir)
                    peak = max(peak, run.peakRSSBytes)
                    let outcome = run.outcome
                    if outcome.severity > worst.severity { worst = outcome; detail = run.summary(arguments) }
                }
                tally[kind, default: CLIFuzzTally()].add(worst, peakRSS: peak)
                if worst.isFailure {
                    let label = "\(kind) round \(round): \(prepared.change)"
                    failures.append("\(label)\n    \(detail)")
                    let saved = keep.appendingPathComponent("\(kind)-\(round)")
                    try? FileManager.default.createDirectory(at: keep, withIntermediateDirectories: true)
                    try? FileManager.default.removeItem(at: saved)
                    try? FileManager.default.copyItem(at: dir, to: saved)
                }
            }
            if (round + 1) % 20 == 0 || round + 1 == cases {
                let table = CLIFuzzTally.table(tally, kinds: kinds, rounds: round + 1, of: cases, seed: seed,
                                               seconds: Date().timeIntervalSince(start), limits: limits)
                if let path = env["FUZZ_REPORT"] { try? Data((table + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic) }
                if round + 1 == cases { print(table) }
            }
        }
        try? FileManager.default.removeItem(at: work.appendingPathComponent("case"))
        for f in failures.prefix(20) { Issue.record("\(f)") }
        #expect(failures.isEmpty, "\(failures.count) cases crashed, hung or ended untyped; inputs kept in \(keep.path)")
    }
}

/// The time limit and address-space cap of one child.
struct ChildLimits: Sendable {
    var seconds: Double
    var addressSpaceBytes: Int
}

/// How one child ended.
enum CLIFuzzOutcome: Sendable, Equatable {
    case success, typedError, untyped(String), crash(signal: Int32), hang

    var severity: Int {
        switch self {
        case .success: return 0
        case .typedError: return 1
        case .untyped: return 2
        case .hang: return 3
        case .crash: return 4
        }
    }
    var isFailure: Bool { severity >= 2 }
}

/// One child process: `/bin/sh` sets the address-space cap (`ulimit -v`) and execs the CLI; the parent
/// polls its status and its peak RSS (VmHWM, every ≤ 4 ms, so a spike in its last milliseconds can be
/// missed) and kills it at the time limit.
struct ChildRun {
    var status: Int32 = 0
    var timedOut = false
    var peakRSSBytes = 0
    var stdout = ""
    var stderr = ""
    var seconds = 0.0

    static func run(_ executable: String, _ arguments: [String], limits: ChildLimits, folder: URL) -> ChildRun {
        var result = ChildRun()
        let outPath = folder.appendingPathComponent("child.stdout").path
        let errPath = folder.appendingPathComponent("child.stderr").path
        let script = "ulimit -v \(limits.addressSpaceBytes / 1024) && exec \"$0\" \"$@\""
        let argv = ["/bin/sh", "-c", script, executable] + arguments
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let cArgs = argv.map { strdup($0) } + [nil]
        defer { for p in cArgs { free(p) } }
        var pid: pid_t = 0
        let start = Date()
        let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, cArgs, environ)
        guard rc == 0 else {
            result.status = -1
            result.stderr = "posix_spawn failed: \(rc)"
            return result
        }
        var status: Int32 = 0
        var delay: useconds_t = 500
        while true {
            // The child's own high-water mark (VmHWM), sampled while it runs. (wait4's ru_maxrss would
            // include this process's: posix_spawn shares our address space until the exec.)
            if let hwm = Self.highWaterMark(pid) { result.peakRSSBytes = max(result.peakRSSBytes, hwm) }
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { result.status = -1; return result }
            if Date().timeIntervalSince(start) > limits.seconds {
                result.timedOut = true
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            usleep(delay)
            delay = min(delay * 2, 4000)
        }
        result.seconds = Date().timeIntervalSince(start)
        result.status = status
        result.stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        result.stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return result
    }

    /// VmHWM of a running process in bytes, from /proc (nil once it has exited).
    static func highWaterMark(_ pid: pid_t) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }

    /// The exit code, or nil when a signal ended the child.
    var exitCode: Int32? { status & 0x7F == 0 ? (status >> 8) & 0xFF : nil }

    var outcome: CLIFuzzOutcome {
        if timedOut { return .hang }
        guard let code = exitCode else { return .crash(signal: status & 0x7F) }
        if code == 0 { return .success }
        let lines = stderr.split(separator: "\n") + stdout.split(separator: "\n")
        if code == 1 || code == 64,
           lines.contains(where: { $0.hasPrefix("error: ") || ($0.hasPrefix("verify ") && $0.hasSuffix(": FAIL")) }) {
            return .typedError
        }
        return .untyped("exit \(code)")
    }

    func summary(_ arguments: [String]) -> String {
        let tail = stderr.split(separator: "\n").suffix(3).joined(separator: " | ")
        return "teacache \(arguments.joined(separator: " ")) → \(outcome) after \(String(format: "%.1f", seconds)) s: \(tail)"
    }
}

/// Per-kind totals.
struct CLIFuzzTally: Sendable {
    var cases = 0, typedErrors = 0, successes = 0, untyped = 0, crashes = 0, hangs = 0
    var peakRSSBytes = 0

    mutating func add(_ outcome: CLIFuzzOutcome, peakRSS: Int) {
        cases += 1
        peakRSSBytes = max(peakRSSBytes, peakRSS)
        switch outcome {
        case .success: successes += 1
        case .typedError: typedErrors += 1
        case .untyped: untyped += 1
        case .crash: crashes += 1
        case .hang: hangs += 1
        }
    }

    static func table(_ t: [CLIFuzzKind: CLIFuzzTally], kinds: [CLIFuzzKind], rounds: Int, of total: Int, seed: UInt64,
                      seconds: Double, limits: ChildLimits) -> String {
        var lines = [String(format: "CLI fuzz campaign: %d of %d cases per kind, seed %llu, %.0f s; child limits %.0f s, %.1f GB address space",
                            rounds, total, seed, seconds, limits.seconds, Double(limits.addressSpaceBytes) / 1_073_741_824),
                     "| kind | cases | typed errors | successes | untyped | crashes | hangs | peak RSS |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for k in kinds {
            let x = t[k] ?? CLIFuzzTally()
            lines.append("| \(k.title) | \(x.cases) | \(x.typedErrors) | \(x.successes) | \(x.untyped) | \(x.crashes) | \(x.hangs) | "
                         + String(format: "%.0f MB |", Double(x.peakRSSBytes) / 1_048_576))
        }
        return lines.joined(separator: "\n")
    }
}

/// A prepared case: the mutated inputs are in the case folder; `runs` are the CLI argument lists.
struct CLIFuzzCase {
    var change: String
    var runs: [[String]]
}

/// The input kinds of the campaign and the commands that read them.
enum CLIFuzzKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// A fixture folder's `config.json` → `teacache verify`.
    case config
    /// A single-file checkpoint (float32, float16 or bfloat16) → `teacache inspect` and `teacache verify`.
    case safetensors
    /// A two-shard checkpoint with its index (float32, float16 or bfloat16; the index or a shard mutated)
    /// → `teacache calibrate --weights INDEX`.
    case sharded
    /// `forward.json`, `sampling.json`, `forward.safetensors`, `sampling.safetensors` → `teacache verify`.
    case fixture
    /// A benchmark file (`Benchmarks/configs/*.json`, and each fixture configuration at small sizes) →
    /// `teacache bench forward` with a 0.05 GB budget.
    case benchmark
    /// A cache-policy recording's tensors (`Tests/Fixtures/policies/*/policy.safetensors`) → `teacache inspect`.
    case policy
    /// A calibrated TeaCache preset JSON → `teacache demo --preset`.
    case preset

    var description: String { rawValue }

    var title: String {
        switch self {
        case .config: return "config.json (verify)"
        case .safetensors: return "safetensors, one file, f32/f16/bf16 (inspect, verify)"
        case .sharded: return "safetensors, sharded with index, f32/f16/bf16 (calibrate)"
        case .fixture: return "fixture JSON and tensors (verify)"
        case .benchmark: return "benchmark files (bench forward)"
        case .policy: return "policy recordings' tensors (inspect)"
        case .preset: return "calibration presets (demo --preset)"
        }
    }

    func prepare(in dir: URL, seeds: CLIFuzzSeeds, rng: inout SeededGenerator) throws -> CLIFuzzCase {
        let fm = FileManager.default
        func pick<T>(_ xs: [T]) -> T { xs[Int.random(in: 0..<xs.count, using: &rng)] }
        func mutateJSON(_ url: URL, restrict: @escaping ([JSONMutator.Step]) -> Bool = { _ in true }) throws -> String {
            let data = try Data(contentsOf: url)
            var current = data
            var what: [String] = []
            for _ in 0..<Int.random(in: 1...2, using: &rng) {
                guard let m = JSONMutator.mutate(current, &rng, restrict: restrict) else { break }
                current = m.data
                what.append(m.description)
            }
            try current.write(to: url)
            return what.isEmpty ? "unchanged" : what.joined(separator: "; ")
        }
        func mutateTensors(_ url: URL) throws -> String {
            var bytes = [UInt8](try Data(contentsOf: url))
            var what: [String] = []
            for _ in 0..<Int.random(in: 1...2, using: &rng) {
                let m = SafetensorsMutator.mutate(bytes, &rng)
                bytes = m.bytes
                what.append(m.description)
            }
            try Data(bytes).write(to: url)
            return what.joined(separator: "; ")
        }
        let folder = dir.appendingPathComponent("input")
        switch self {
        case .config:
            let seed = pick(seeds.fixtureFolders)
            try fm.copyItem(at: seed, to: folder)
            let what = try mutateJSON(folder.appendingPathComponent("config.json"),
                                      restrict: { $0.first.map { "\($0)" } == "config" || $0.count == 1 })
            return CLIFuzzCase(change: "\(seed.lastPathComponent)/config.json: \(what)", runs: [["verify", folder.path]])
        case .safetensors:
            let (seed, precision) = pick(seeds.precisionFolders)
            try fm.copyItem(at: seed, to: folder)
            let file = folder.appendingPathComponent("model.safetensors")
            let what = try mutateTensors(file)
            return CLIFuzzCase(change: "\(seed.lastPathComponent) (\(precision)) model.safetensors: \(what)",
                               runs: [["inspect", file.path], ["verify", folder.path]])
        case .sharded:
            let (seed, precision) = pick(seeds.shardedCheckpoints)
            try fm.copyItem(at: seed, to: folder)
            let target = pick(["index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
            let url = folder.appendingPathComponent(target)
            let what = target.hasSuffix(".json") ? try mutateJSON(url) : try mutateTensors(url)
            return CLIFuzzCase(change: "flux sharded (\(precision)) \(target): \(what)", runs: [[
                "calibrate", "--model", "flux", "--config", seeds.fluxBenchmark.path, "--weights", url.deletingLastPathComponent()
                    .appendingPathComponent("index.json").path, "--steps", "8", "--seeds", "1", "--force",
                "--memory-budget", "0.2", "--output", dir.appendingPathComponent("out/preset.json").path,
            ]])
        case .fixture:
            let seed = pick(seeds.fixtureFolders)
            try fm.copyItem(at: seed, to: folder)
            let file = pick(["forward.json", "sampling.json", "sampling.json", "forward.safetensors", "sampling.safetensors"])
            let url = folder.appendingPathComponent(file)
            let what = file.hasSuffix(".json") ? try mutateJSON(url) : try mutateTensors(url)
            return CLIFuzzCase(change: "\(seed.lastPathComponent)/\(file): \(what)", runs: [["verify", folder.path]])
        case .benchmark:
            let seed = pick(seeds.benchmarkFiles)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            let url = folder.appendingPathComponent("bench.json")
            try fm.copyItem(at: seed, to: url)
            let what = try mutateJSON(url)
            return CLIFuzzCase(change: "\(seed.lastPathComponent): \(what)", runs: [[
                "bench", "forward", "--config", url.path, "--repeats", "1", "--memory-budget", "0.05", "--threads", "1",
            ]])
        case .policy:
            let seed = pick(seeds.policyFiles)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            let url = folder.appendingPathComponent("policy.safetensors")
            try fm.copyItem(at: seed, to: url)
            let what = try mutateTensors(url)
            return CLIFuzzCase(change: "\(seed.deletingLastPathComponent().lastPathComponent)/policy.safetensors: \(what)",
                               runs: [["inspect", url.path]])
        case .preset:
            let seed = pick(seeds.presets)
            try fm.createDirectory(at: folder, withIntermediateDirectories: true)
            let url = folder.appendingPathComponent("preset.json")
            try fm.copyItem(at: seed, to: url)
            let what = try mutateJSON(url)
            return CLIFuzzCase(change: "\(seed.lastPathComponent): \(what)", runs: [[
                "demo", "--model", "flux", "--config", seeds.fluxBenchmark.path, "--weights",
                Fixtures.folder("flux").appendingPathComponent("model.safetensors").path, "--steps", "4", "--repeats", "1",
                "--thresholds", "0.2", "--preset", url.path, "--memory-budget", "0.2",
                "--output", dir.appendingPathComponent("out").path,
            ]])
        }
    }
}

/// The unmutated inputs every case starts from, made once per campaign.
struct CLIFuzzSeeds {
    /// Fixture folders whose class a registered family loads (as ``FixtureFuzzTests/corpus()``).
    var fixtureFolders: [URL]
    /// Fixture folders with model.safetensors in float32, and copies of a few stored in float16 and bfloat16.
    var precisionFolders: [(URL, String)]
    /// The FLUX fixture's weights in two shards plus `index.json`, per precision.
    var shardedCheckpoints: [(URL, String)]
    /// The FLUX fixture configuration as a benchmark file at small input sizes (for demo and calibrate).
    var fluxBenchmark: URL
    /// `Benchmarks/configs/*.json` and every fixture configuration as a benchmark file at small sizes.
    var benchmarkFiles: [URL]
    /// `Tests/Fixtures/policies/*/policy.safetensors`.
    var policyFiles: [URL]
    /// TeaCache presets: the FLUX preset and one with a guarded schedule.
    var presets: [URL]

    init(root: URL) throws {
        let fm = FileManager.default
        try fm.createDirectory(at: root, withIntermediateDirectories: true)
        fixtureFolders = FixtureFuzzTests.corpus()
        precisionFolders = fixtureFolders.map { ($0, "f32") }
        let repo = Fixtures.root.deletingLastPathComponent().deletingLastPathComponent()
        // Reduced-precision copies of a few families' folders.
        for name in ["flux", "wan21", "ltx_video", "mochi"] {
            for dtype in [SafetensorsDType.f16, .bf16] {
                let source = Fixtures.folder(name)
                guard fm.fileExists(atPath: source.path) else { continue }
                let copy = root.appendingPathComponent("\(name)-\(dtype)")
                try fm.copyItem(at: source, to: copy)
                let tensors = try Fixtures.tensors(name, "model.safetensors")
                try Self.write(tensors, dtype: dtype, to: copy.appendingPathComponent("model.safetensors"))
                precisionFolders.append((copy, "\(dtype)"))
            }
        }
        // Sharded FLUX checkpoints.
        let flux = try Fixtures.tensors("flux", "model.safetensors")
        shardedCheckpoints = []
        for dtype in [SafetensorsDType.f32, .f16, .bf16] {
            let dir = root.appendingPathComponent("flux-sharded-\(dtype)")
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            let names = flux.keys.sorted()
            let half = names.count / 2
            var map: [String: String] = [:]
            for (k, part) in [names[..<half], names[half...]].enumerated() {
                let shard = "model-0000\(k + 1)-of-00002.safetensors"
                try Self.write(flux.filter { part.contains($0.key) }, dtype: dtype, to: dir.appendingPathComponent(shard))
                for n in part { map[n] = shard }
            }
            let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": map]
            try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys, .prettyPrinted])
                .write(to: dir.appendingPathComponent("index.json"))
            shardedCheckpoints.append((dir, "\(dtype)"))
        }
        // Benchmark files.
        let small = root.appendingPathComponent("benchmarks")
        try fm.createDirectory(at: small, withIntermediateDirectories: true)
        benchmarkFiles = try fm.contentsOfDirectory(atPath: repo.appendingPathComponent("Benchmarks/configs").path).sorted()
            .filter { $0.hasSuffix(".json") }.map { repo.appendingPathComponent("Benchmarks/configs").appendingPathComponent($0) }
        var fluxBenchmark: URL?
        for folder in fixtureFolders {
            let url = small.appendingPathComponent(folder.lastPathComponent + "-small.json")
            try Self.smallBenchmark(folder.appendingPathComponent("config.json")).write(to: url)
            benchmarkFiles.append(url)
            if folder.lastPathComponent == "flux" { fluxBenchmark = url }
        }
        self.fluxBenchmark = try #require(fluxBenchmark)
        let policies = Fixtures.root.appendingPathComponent("policies")
        policyFiles = try fm.contentsOfDirectory(atPath: policies.path).sorted()
            .map { policies.appendingPathComponent($0).appendingPathComponent("policy.safetensors") }
            .filter { fm.fileExists(atPath: $0.path) }
        presets = []
        let guarded = try TeaCachePreset(name: "flux-guarded", coefficients: FluxFamily.defaultPreset.coefficients,
                                     defaultThreshold: 0.3, calibratedRange: 0.001...0.5, modulatedInput: FluxFamily.defaultPreset.modulatedInput,
                                     provenance: "fuzz seed", schedule: FluxFamily.defaultPreset.schedule)
        for preset in [FluxFamily.defaultPreset, guarded] {
            let url = root.appendingPathComponent("\(preset.name).json")
            try preset.jsonData().write(to: url)
            presets.append(url)
        }
    }

    /// `tensors` stored as `dtype` (float32, float16 or bfloat16, rounded to nearest even).
    static func write(_ tensors: [String: Tensor], dtype: SafetensorsDType, to url: URL) throws {
        var w = SafetensorsWriter()
        for (name, t) in tensors.sorted(by: { $0.key < $1.key }) {
            switch dtype {
            case .f16:
                let bits = t.scalars.map { Float16($0).bitPattern }
                try w.addRaw(named: name, dtype: .f16, shape: t.shape, bytes: bits.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
            case .bf16:
                let bits = t.scalars.map { f -> UInt16 in
                    let b = f.bitPattern
                    return UInt16(truncatingIfNeeded: (b &+ 0x7FFF &+ ((b >> 16) & 1)) >> 16)
                }
                try w.addRaw(named: name, dtype: .bf16, shape: t.shape, bytes: bits.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })
            default:
                try w.add(t, named: name)
            }
        }
        try w.write(to: url)
    }

    /// A benchmark file (`{"class", "config", "inputs"}`) of a fixture configuration at the family's
    /// benchmark input names with every size at most 8.
    static func smallBenchmark(_ config: URL) throws -> Data {
        let data = try Data(contentsOf: config)
        let (className, _) = try ModelConfigFile.parse(data)
        let family = try DiTFamilies.harness(forClass: className)
        let inputs = family.benchmarkInputs.mapValues { min($0, 8) }
        var object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        object["inputs"] = inputs
        return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    }
}

extension DiTFamilyHarness {
    /// The family's benchmark input sizes by name.
    static var benchmarkInputs: [String: Int] { benchmarkDefault.inputs.values }
}
