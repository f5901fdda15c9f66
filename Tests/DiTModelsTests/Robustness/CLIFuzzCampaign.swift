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
/// The kinds take turns case by case, so a campaign stopped early has covered every kind equally. Cases
/// are prepared in order on one thread (the same seed gives the same cases for any number of workers) and
/// run by `FUZZ_JOBS` workers while the next batch is prepared. The table (cases, typed errors, successes,
/// untyped, crashes, hangs, the largest child's peak RSS, sampled, and the CLI's wall and CPU time per
/// case) is printed and written to `FUZZ_REPORT` every 20 rounds; a crash, hang or untyped ending fails
/// the test and keeps its inputs under `FUZZ_KEEP` (default: the temporary folder) to reproduce it.
///
/// Environment: `FUZZ_CLI_CASES` (cases per kind; the test is skipped without it), `FUZZ_SEED` (1),
/// `FUZZ_KINDS` (comma list, default all), `FUZZ_TIMEOUT` (seconds per child, 60),
/// `FUZZ_ADDRESS_SPACE_GB` (4), `FUZZ_JOBS` (children at once; default the active core count),
/// `FUZZ_TEACACHE` (the executable; default `teacache` next to the test bundle), `FUZZ_TIMINGS` (a file:
/// one line per CLI run — kind, subcommand, ending, seconds), `FUZZ_KEEP_SEEDS` (set: keep the unmutated
/// inputs in the temporary folder).
@Suite struct CLIFuzzCampaign {
    static var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// Rounds prepared together and then run by the workers (divides the report interval of 20 rounds, so
    /// the table is written after whole batches).
    static let roundsPerBatch = 4

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
        let jobs = max(1, env["FUZZ_JOBS"].flatMap(Int.init) ?? ProcessInfo.processInfo.activeProcessorCount)
        let executable = env["FUZZ_TEACACHE"].map { URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("teacache")
        try #require(FileManager.default.isExecutableFile(atPath: executable.path), "no teacache executable at \(executable.path)")

        let work = FileManager.default.temporaryDirectory.appendingPathComponent("teacache-cli-fuzz-\(getpid())")
        let keep = URL(fileURLWithPath: env["FUZZ_KEEP"] ?? work.appendingPathComponent("failures").path)
        try? FileManager.default.removeItem(at: work)
        defer { if env["FUZZ_KEEP_SEEDS"] == nil { try? FileManager.default.removeItem(at: work.appendingPathComponent("seeds")) } }
        let seeds = try CLIFuzzSeeds(root: work.appendingPathComponent("seeds"))
        let timings = env["FUZZ_TIMINGS"].flatMap { path -> FileHandle? in
            _ = FileManager.default.createFile(atPath: path, contents: nil)   // FileHandle below is nil when it failed
            return FileHandle(forWritingAtPath: path)
        }
        defer { try? timings?.close() }
        var tally = [CLIFuzzKind: CLIFuzzTally]()
        var failures: [String] = []
        var rng = SeededGenerator(seed: seed)
        let start = Date()
        typealias Item = (round: Int, kind: CLIFuzzKind, folder: URL, prepared: CLIFuzzCase)
        // Tallies a finished batch, keeps the inputs of its failures, and writes the table every 20 rounds.
        func finish(_ batch: [Item], _ results: [CLIFuzzCaseResult]) {
            for (item, result) in zip(batch, results) {
                tally[item.kind, default: CLIFuzzTally()].add(result.worst, peakRSS: result.peakRSSBytes, seconds: result.seconds,
                                                              cpuSeconds: result.cpuSeconds)
                if let timings {
                    for (command, outcome, seconds) in result.runs {
                        timings.write(Data("\(item.kind)\t\(command)\t\(outcome.label)\t\(String(format: "%.4f", seconds))\n".utf8))
                    }
                }
                if result.worst.isFailure {
                    let label = "\(item.kind) round \(item.round): \(item.prepared.change)"
                    failures.append("\(label)\n    \(result.detail)")
                    let saved = keep.appendingPathComponent("\(item.kind)-\(item.round)")
                    try? FileManager.default.createDirectory(at: keep, withIntermediateDirectories: true)
                    try? FileManager.default.removeItem(at: saved)
                    try? FileManager.default.copyItem(at: item.folder, to: saved)
                }
            }
            let done = (batch.last?.round ?? -1) + 1
            if done % 20 == 0 || done == cases {
                let table = CLIFuzzTally.table(tally, kinds: kinds, rounds: done, of: cases, seed: seed,
                                               seconds: Date().timeIntervalSince(start), limits: limits, jobs: jobs)
                if let path = env["FUZZ_REPORT"] { try? Data((table + "\n").utf8).write(to: URL(fileURLWithPath: path), options: .atomic) }
                if done == cases { print(table) }
            }
        }
        // Batches of rounds: the cases of a batch are prepared one after another on this thread (so the
        // mutations do not depend on FUZZ_JOBS), each in its own folder, while the previous batch runs on
        // up to `jobs` workers; two sets of folders take turns.
        var running: (batch: [Item], run: CLIFuzzWorkers.Pending)?
        var round = 0
        var set = 0
        while round < cases {
            let rounds = round..<min(cases, round + Self.roundsPerBatch)
            var batch: [Item] = []
            for r in rounds {
                for kind in kinds {
                    let dir = work.appendingPathComponent("case-\(set)-\(batch.count)")
                    try? FileManager.default.removeItem(at: dir)
                    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
                    batch.append((r, kind, dir, try kind.prepare(in: dir, seeds: seeds, rng: &rng)))
                }
            }
            if let previous = running { finish(previous.batch, previous.run.wait()) }
            running = (batch, CLIFuzzWorkers.start(batch.map { ($0.folder, $0.prepared.runs) }, executable: executable.path,
                                                   limits: limits, jobs: jobs))
            round = rounds.upperBound
            set = 1 - set
        }
        if let previous = running { finish(previous.batch, previous.run.wait()) }
        for s in 0..<2 {
            for i in 0..<(Self.roundsPerBatch * kinds.count) { try? FileManager.default.removeItem(at: work.appendingPathComponent("case-\(s)-\(i)")) }
        }
        for f in failures.prefix(20) { Issue.record("\(f)") }
        #expect(failures.isEmpty, "\(failures.count) cases crashed, hung or ended untyped; inputs kept in \(keep.path)")
    }
}

/// What one case's runs came to: the worst ending, the largest peak RSS, the CLI time.
struct CLIFuzzCaseResult: Sendable {
    var worst = CLIFuzzOutcome.success
    var peakRSSBytes = 0
    var seconds = 0.0
    var cpuSeconds = 0.0
    var detail = ""
    /// Per run: the subcommand, its ending and its seconds.
    var runs: [(String, CLIFuzzOutcome, Double)] = []
}

/// Runs prepared cases on up to `jobs` threads (each case's runs in order, in the case's folder).
enum CLIFuzzWorkers {
    private final class Queue: @unchecked Sendable {   // guarded by `lock`
        let lock = NSLock()
        var next = 0
        var results: [CLIFuzzCaseResult]
        init(count: Int) { results = Array(repeating: CLIFuzzCaseResult(), count: count) }
    }

    /// A batch running in the background.
    final class Pending: @unchecked Sendable {   // `results` is written before `done` is signalled and read after
        fileprivate var results: [CLIFuzzCaseResult] = []
        fileprivate let done = DispatchSemaphore(value: 0)
        /// Waits for the batch and returns its results in case order.
        func wait() -> [CLIFuzzCaseResult] {
            done.wait()
            return results
        }
    }

    /// The nice value of the process (its main thread; Linux keeps one per thread).
    static let processNice: Int32 = {
        errno = 0
        let value = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(getpid()))
        return errno == 0 ? value : 0
    }()

    /// Starts ``run(_:executable:limits:jobs:)`` on another thread.
    static func start(_ cases: [(folder: URL, runs: [[String]])], executable: String, limits: ChildLimits, jobs: Int) -> Pending {
        let pending = Pending()
        Thread.detachNewThread {
            pending.results = run(cases, executable: executable, limits: limits, jobs: jobs)
            pending.done.signal()
        }
        return pending
    }

    static func run(_ cases: [(folder: URL, runs: [[String]])], executable: String, limits: ChildLimits, jobs: Int) -> [CLIFuzzCaseResult] {
        let queue = Queue(count: cases.count)
        let nice = processNice
        DispatchQueue.concurrentPerform(iterations: min(jobs, cases.count)) { _ in
            // Children inherit the nice value of the thread that spawns them, and a pool thread does not
            // have the process's (`nice -n 19 scripts/fuzz.sh` would otherwise run its children at 0).
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, nice)
            while true {
                queue.lock.lock()
                let i = queue.next
                queue.next += 1
                queue.lock.unlock()
                guard i < cases.count else { return }
                var result = CLIFuzzCaseResult()
                for arguments in cases[i].runs {
                    let run = ChildRun.run(executable, arguments, limits: limits, folder: cases[i].folder)
                    result.peakRSSBytes = max(result.peakRSSBytes, run.peakRSSBytes)
                    result.seconds += run.seconds
                    result.cpuSeconds += run.cpuSeconds
                    let outcome = run.outcome
                    result.runs.append((arguments.first ?? "", outcome, run.seconds))
                    if outcome.severity > result.worst.severity { result.worst = outcome; result.detail = run.summary(arguments) }
                }
                queue.lock.lock()
                queue.results[i] = result
                queue.lock.unlock()
            }
        }
        return queue.results
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

    /// A one-word name for timing records.
    var label: String {
        switch self {
        case .success: return "success"
        case .typedError: return "typed"
        case .untyped: return "untyped"
        case .crash: return "crash"
        case .hang: return "hang"
        }
    }
}

/// One child process: `/bin/sh` sets the address-space cap (`ulimit -v`) and execs the CLI; the parent
/// polls its status and its peak RSS (VmHWM, every ≤ 1 ms, so a spike in its last millisecond can be
/// missed; most cases take 10–30 ms, so a coarser poll would add much of a case's time) and kills it at
/// the time limit.
struct ChildRun {
    var status: Int32 = 0
    var timedOut = false
    var peakRSSBytes = 0
    var stdout = ""
    var stderr = ""
    /// Wall time from spawn to exit.
    var seconds = 0.0
    /// The child's CPU time (user + system, all its threads; from wait4), which load on the machine changes less.
    var cpuSeconds = 0.0

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
        let cEnv = Self.environment.map { strdup($0) } + [nil]
        defer { for p in cEnv { free(p) } }
        let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, cArgs, cEnv)
        guard rc == 0 else {
            result.status = -1
            result.stderr = "posix_spawn failed: \(rc)"
            return result
        }
        let executableName = String(URL(fileURLWithPath: executable).lastPathComponent.prefix(15))   // the kernel's comm is 15 bytes
        var status: Int32 = 0
        var usage = rusage()
        var delay: useconds_t = 250
        while true {
            // The child's own high-water mark (VmHWM), sampled while it runs. (wait4's ru_maxrss would
            // include this process's: posix_spawn shares our address space until the exec.)
            if let hwm = Self.highWaterMark(pid, name: executableName) { result.peakRSSBytes = max(result.peakRSSBytes, hwm) }
            let r = wait4(pid, &status, WNOHANG, &usage)
            if r == pid { break }
            if r < 0 && errno != EINTR { result.status = -1; return result }
            if Date().timeIntervalSince(start) > limits.seconds {
                result.timedOut = true
                kill(pid, SIGKILL)
                _ = wait4(pid, &status, 0, &usage)
                break
            }
            usleep(delay)
            delay = min(delay * 2, 1000)
        }
        result.seconds = Date().timeIntervalSince(start)
        result.cpuSeconds = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        result.status = status
        result.stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
        result.stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return result
    }

    /// This process's environment with `OPENBLAS_NUM_THREADS=1`. The package sets OpenBLAS to one thread
    /// before its first BLAS call anyway (`Parallelism.blasConfigured`), so results and code paths are the
    /// same; without it OpenBLAS starts a worker at load that spins for the life of a short process, about
    /// 14 ms of CPU per child taken from the other workers' core.
    static let environment: [String] = {
        var env = ProcessInfo.processInfo.environment
        env["OPENBLAS_NUM_THREADS"] = "1"
        return env.map { "\($0.key)=\($0.value)" }.sorted()
    }()

    /// VmHWM of a running process in bytes, from /proc, once it runs `name` (nil before: between spawn and
    /// exec the child shares this process's memory and reports this process's high-water mark; and nil
    /// once it has exited).
    static func highWaterMark(_ pid: pid_t, name: String) -> Int? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              text.split(separator: "\n").first == "Name:\t\(name)"[...],
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
    /// The CLI time of every case together (child start to exit), and its CPU time.
    var seconds = 0.0, cpuSeconds = 0.0

    mutating func add(_ outcome: CLIFuzzOutcome, peakRSS: Int, seconds: Double, cpuSeconds: Double) {
        cases += 1
        peakRSSBytes = max(peakRSSBytes, peakRSS)
        self.seconds += seconds
        self.cpuSeconds += cpuSeconds
        switch outcome {
        case .success: successes += 1
        case .typedError: typedErrors += 1
        case .untyped: untyped += 1
        case .crash: crashes += 1
        case .hang: hangs += 1
        }
    }

    static func table(_ t: [CLIFuzzKind: CLIFuzzTally], kinds: [CLIFuzzKind], rounds: Int, of total: Int, seed: UInt64,
                      seconds: Double, limits: ChildLimits, jobs: Int) -> String {
        let all = kinds.reduce(into: (cases: 0, seconds: 0.0, cpu: 0.0)) {
            $0.cases += t[$1]?.cases ?? 0; $0.seconds += t[$1]?.seconds ?? 0; $0.cpu += t[$1]?.cpuSeconds ?? 0
        }
        let perCase = { (s: Double, n: Int) in 1000 * s / Double(max(n, 1)) }
        var lines = [String(format: "CLI fuzz campaign: %d of %d cases per kind, seed %llu, %.0f s on %d workers (%.0f ms wall per case overall; "
                                + "CLI per case %.1f ms wall, %.1f ms CPU); child limits %.0f s, %.1f GB address space",
                            rounds, total, seed, seconds, jobs, perCase(seconds, all.cases), perCase(all.seconds, all.cases),
                            perCase(all.cpu, all.cases), limits.seconds, Double(limits.addressSpaceBytes) / 1_073_741_824),
                     "| kind | cases | typed errors | successes | untyped | crashes | hangs | peak RSS | CLI ms per case (wall, CPU) |",
                     "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for k in kinds {
            let x = t[k] ?? CLIFuzzTally()
            lines.append("| \(k.title) | \(x.cases) | \(x.typedErrors) | \(x.successes) | \(x.untyped) | \(x.crashes) | \(x.hangs) | "
                         + String(format: "%.0f MB | %.0f, %.0f |", Double(x.peakRSSBytes) / 1_048_576,
                                  perCase(x.seconds, x.cases), perCase(x.cpuSeconds, x.cases)))
        }
        return lines.joined(separator: "\n")
    }
}

/// A prepared case: the mutated inputs are in the case folder; `runs` are the CLI argument lists.
struct CLIFuzzCase: Sendable {
    var change: String
    var runs: [[String]]
}

/// The input kinds of the campaign and the commands that read them.
enum CLIFuzzKind: String, CaseIterable, Sendable, CustomStringConvertible {
    /// A fixture folder's `config.json` → `teacache verify`.
    case config
    /// A single-file checkpoint (float32, float16, bfloat16, or int8 in the stored form of `teacache quantize`)
    /// → `teacache inspect` and `teacache verify --precision P`, P mostly the file's own precision (16-bit
    /// and int8 matrices then used in place from the mapping), else float32 or another precision.
    case safetensors
    /// A two-shard checkpoint with its index (float32, float16, bfloat16 or int8; the index or a shard
    /// mutated) → `teacache calibrate --weights INDEX --precision P`, P chosen as for ``safetensors``.
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
        case .safetensors: return "safetensors, one file, f32/f16/bf16/int8 (inspect, verify)"
        case .sharded: return "safetensors, sharded with index, f32/f16/bf16/int8 (calibrate)"
        case .fixture: return "fixture JSON and tensors (verify)"
        case .benchmark: return "benchmark files (bench forward)"
        case .policy: return "policy recordings' tensors (inspect)"
        case .preset: return "calibration presets (demo --preset)"
        }
    }

    /// The precisions a checkpoint stored as `dtype` is loaded at, one picked per case: mostly its own (16-bit
    /// and int8 matrices used in place from the mapping), else float32 or another (converted on load).
    static func loadPrecisions(_ dtype: SafetensorsDType) -> [WeightPrecision] {
        switch dtype {
        case .f16: return [.float16, .float16, .float32]
        case .bf16: return [.bfloat16, .bfloat16, .float32]
        case .i8: return [.int8, .int8, .int8, .float32, .bfloat16]
        default: return [.float32, .float32, .float32, .bfloat16, .float16, .int8]
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
        func mutateTensors(_ url: URL, int8: Bool = false) throws -> String {
            var bytes = [UInt8](try Data(contentsOf: url))
            var what: [String] = []
            for _ in 0..<Int.random(in: 1...2, using: &rng) {
                // Int8 files: half of the mutations aim at the stored form (group size, scales, I8 values).
                let m = int8 && Bool.random(using: &rng) ? SafetensorsMutator.mutateInt8(bytes, &rng) : SafetensorsMutator.mutate(bytes, &rng)
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
            let (seed, stored) = pick(seeds.precisionFolders)
            try fm.copyItem(at: seed, to: folder)
            let file = folder.appendingPathComponent("model.safetensors")
            let what = try mutateTensors(file, int8: stored == .i8)
            let load = pick(Self.loadPrecisions(stored))
            return CLIFuzzCase(change: "\(seed.lastPathComponent) (\(stored.rawValue), loaded at \(load)) model.safetensors: \(what)",
                               runs: [["inspect", file.path], ["verify", folder.path, "--precision", load.rawValue]])
        case .sharded:
            let (seed, stored) = pick(seeds.shardedCheckpoints)
            try fm.copyItem(at: seed, to: folder)
            let target = pick(["index.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
            let url = folder.appendingPathComponent(target)
            let what = target.hasSuffix(".json") ? try mutateJSON(url) : try mutateTensors(url, int8: stored == .i8)
            let load = pick(Self.loadPrecisions(stored))
            return CLIFuzzCase(change: "flux sharded (\(stored.rawValue), loaded at \(load)) \(target): \(what)", runs: [[
                "calibrate", "--model", "flux", "--config", seeds.fluxBenchmark.path, "--weights", url.deletingLastPathComponent()
                    .appendingPathComponent("index.json").path, "--steps", "8", "--seeds", "1", "--force",
                "--memory-budget", "0.2", "--precision", load.rawValue, "--output", dir.appendingPathComponent("out/preset.json").path,
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
    /// Fixture folders with model.safetensors in float32, and copies of a few stored in float16, bfloat16 and
    /// int8 (as `teacache quantize` writes it: `I8` matrices, `<name>.scales`, the group size in the metadata).
    var precisionFolders: [(URL, SafetensorsDType)]
    /// The FLUX fixture's weights in two shards plus `index.json`, per stored precision (int8: each shard
    /// with the group-size metadata).
    var shardedCheckpoints: [(URL, SafetensorsDType)]
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
        precisionFolders = fixtureFolders.map { ($0, .f32) }
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
                precisionFolders.append((copy, dtype))
            }
            let copy = root.appendingPathComponent("\(name)-int8")
            try fm.copyItem(at: Fixtures.folder(name), to: copy)
            try Self.quantize(folder: Fixtures.folder(name), to: copy.appendingPathComponent("model.safetensors"))
            precisionFolders.append((copy, .i8))
        }
        // Sharded FLUX checkpoints.
        let flux = try Fixtures.tensors("flux", "model.safetensors")
        shardedCheckpoints = []
        let fluxInt8 = root.appendingPathComponent("flux-int8/model.safetensors")
        let int8Entries = try StoredEntries(contentsOf: fluxInt8)
        for dtype in [SafetensorsDType.f32, .f16, .bf16, .i8] {
            let dir = root.appendingPathComponent("flux-sharded-\(dtype)")
            try fm.createDirectory(at: dir, withIntermediateDirectories: true)
            let names = dtype == .i8 ? int8Entries.entries.map(\.name).sorted() : flux.keys.sorted()
            let half = names.count / 2
            var map: [String: String] = [:]
            for (k, part) in [names[..<half], names[half...]].enumerated() {
                let shard = "model-0000\(k + 1)-of-00002.safetensors"
                let url = dir.appendingPathComponent(shard)
                if dtype == .i8 {
                    try int8Entries.write(only: Set(part), to: url)
                } else {
                    try Self.write(flux.filter { part.contains($0.key) }, dtype: dtype, to: url)
                }
                for n in part { map[n] = shard }
            }
            let index: [String: Any] = ["metadata": ["total_size": 0], "weight_map": map]
            try JSONSerialization.data(withJSONObject: index, options: [.sortedKeys, .prettyPrinted])
                .write(to: dir.appendingPathComponent("index.json"))
            shardedCheckpoints.append((dir, dtype))
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

    /// The fixture folder's weights in int8 as `teacache quantize` stores them (`DiTFamily.convertWeights`).
    static func quantize(folder: URL, to output: URL) throws {
        let (className, body) = try ModelConfigFile.parse(Data(contentsOf: folder.appendingPathComponent("config.json")))
        try convert(DiTFamilies.family(forClass: className), body: body, className: className,
                    weights: folder.appendingPathComponent("model.safetensors"), output: output)
    }

    private static func convert<F: DiTFamily>(_: F.Type, body: Data, className: String, weights: URL, output: URL) throws {
        try F.convertWeights(F.Configuration.parse(body, className: className), weightsAt: weights, precision: .int8, to: output)
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

/// A safetensors file's metadata and entries as stored (dtype, shape, bytes), to write subsets of it.
struct StoredEntries {
    var metadata: [String: String]
    var entries: [(name: String, dtype: SafetensorsDType, shape: [Int], bytes: [UInt8])]

    init(contentsOf url: URL) throws {
        let file = [UInt8](try Data(contentsOf: url))
        let n = try #require(SafetensorsMutator.headerLength(file))
        let header = try #require(try JSONSerialization.jsonObject(with: Data(file[8..<(8 + n)])) as? [String: Any])
        metadata = header["__metadata__"] as? [String: String] ?? [:]
        entries = []
        for (name, value) in header where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            let dtype = try #require((entry["dtype"] as? String).flatMap(SafetensorsDType.init(rawValue:)))
            let shape = try #require(entry["shape"] as? [Int])
            let offsets = try #require(entry["data_offsets"] as? [Int])
            entries.append((name, dtype, shape, Array(file[(8 + n + offsets[0])..<(8 + n + offsets[1])])))
        }
    }

    /// Writes the entries named in `names`, with all of the metadata.
    func write(only names: Set<String>, to url: URL) throws {
        var w = SafetensorsWriter(metadata: metadata)
        for e in entries.sorted(by: { $0.name < $1.name }) where names.contains(e.name) {
            try w.addRaw(named: e.name, dtype: e.dtype, shape: e.shape, bytes: e.bytes)
        }
        try w.write(to: url)
    }
}
