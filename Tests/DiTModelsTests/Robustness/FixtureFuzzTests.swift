import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Safetensors
import TeaCache
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// A seeded, deterministic mutation fuzzer over every fixture folder a registered family handles.
///
/// Each case copies a folder, mutates one file — a `config.json`, `forward.json` or `sampling.json` value
/// (scaled, negated, huge, zero, another type, removed), a safetensors header (shapes, offsets, dtypes,
/// length prefix, truncation) or data bytes — and runs the entry points the CLI uses on it: `teacache
/// verify` (config, weights, forward, sampling), `teacache inspect` on the mutated safetensors, and for a
/// mutated config also `bench forward`'s model and inputs with a 0.1 GB memory budget. Every case must end in
/// success, a failed check, or an error of the package's typed error enums.
///
/// The campaign runs in a child process (an exit test) whose address space is capped at 8 GB (not under
/// AddressSanitizer or ThreadSanitizer, whose shadow memory needs more), so a case
/// that tried to allocate beyond any sane bound kills the child and fails the test instead of the
/// machine. CI runs `FUZZ_CASES` cases (default 200); `FUZZ_CASES=20000 swift test --filter FixtureFuzzTests`
/// is the long run. The child prints one line per outcome kind, the slowest case and the peak RSS.
@Suite struct FixtureFuzzTests {
    @Test func mutatedFixturesEndInSuccessOrATypedError() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent, \.standardErrorContent]) {
            FixtureFuzzTests.campaign()
        }
        if let result {
            let out = String(decoding: result.standardOutputContent, as: UTF8.self)
            print(out)
            let err = String(decoding: result.standardErrorContent, as: UTF8.self)
            if !err.isEmpty { print(err.split(separator: "\n").suffix(20).joined(separator: "\n")) }
        }
    }

    /// Runs the campaign (in the child) and exits non-zero on an untyped error.
    static func campaign() {
        #if canImport(Glibc)
        // AddressSanitizer and ThreadSanitizer reserve terabytes of shadow address space: no
        // address-space cap under them.
        let sanitized = ["__asan_init", "__tsan_init"].contains { (symbol: String) in dlsym(UnsafeMutableRawPointer(bitPattern: 0), symbol) != nil }
        if !sanitized {
            var limit = rlimit(rlim_cur: 8 << 30, rlim_max: 8 << 30)
            _ = setrlimit(__rlimit_resource_t(RLIMIT_AS.rawValue), &limit)
        }
        #endif
        let env = ProcessInfo.processInfo.environment
        let cases = env["FUZZ_CASES"].flatMap(Int.init) ?? 200
        let seed = env["FUZZ_SEED"].flatMap(UInt64.init) ?? 1
        let folders = corpus()
        guard !folders.isEmpty else { print("no fixture folder"); exit(2) }
        var rng = SeededGenerator(seed: seed)
        var counts: [String: Int] = [:]
        var slowest = (seconds: 0.0, label: "")
        var untyped: [String] = []
        for k in 0..<cases {
            let folder = folders[Int.random(in: 0..<folders.count, using: &rng)]
            let start = Date()
            let (outcome, label) = runCase(k, folder, &rng)
            let seconds = Date().timeIntervalSince(start)
            if seconds > slowest.seconds { slowest = (seconds, label) }
            counts[outcome, default: 0] += 1
            if outcome.hasPrefix("UNTYPED") { untyped.append("\(label): \(outcome)") }
        }
        var usage = rusage()
        _ = getrusage(RUSAGE_SELF.rawValue, &usage)
        print("fuzz: \(cases) cases over \(folders.count) folders, seed \(seed)")
        for (k, v) in counts.sorted(by: { $0.value > $1.value }) { print("  \(v)\t\(k)") }
        print(String(format: "  slowest case %.2f s: %@", slowest.seconds, slowest.label))
        print(String(format: "  peak RSS %.0f MB", Double(usage.ru_maxrss) / 1024))
        for u in untyped { FileHandle.standardError.write(Data("untyped error: \(u)\n".utf8)) }
        exit(untyped.isEmpty ? 0 : 1)
    }

    /// Public fixture folders and variants with weights, whose class a registered family loads.
    static func corpus() -> [URL] {
        let fm = FileManager.default
        var out: [URL] = []
        for root in [Fixtures.root, Fixtures.root.appendingPathComponent("variants")] {
            for name in ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted() {
                let url = root.appendingPathComponent(name)
                guard fm.fileExists(atPath: url.appendingPathComponent("model.safetensors").path),
                      let (cls, _) = try? ModelConfigFile.read(url.appendingPathComponent("config.json")),
                      (try? DiTFamilies.family(forClass: cls)) != nil else { continue }
                out.append(url)
            }
        }
        return out
    }

    static let files = ["config.json", "config.json", "config.json", "forward.json", "sampling.json", "sampling.json",
                        "model.safetensors", "model.safetensors", "forward.safetensors", "sampling.safetensors"]

    /// One case: copy, mutate, run the entry points; returns the outcome kind and a label.
    static func runCase(_ k: Int, _ folder: URL, _ rng: inout SeededGenerator) -> (String, String) {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("teacache-fuzz-\(getpid())-\(k)")
        try? fm.removeItem(at: dir)
        defer { try? fm.removeItem(at: dir) }
        do { try fm.copyItem(at: folder, to: dir) } catch { return ("setup failed: \(error)", "case \(k)") }
        let file = files[Int.random(in: 0..<files.count, using: &rng)]
        let url = dir.appendingPathComponent(file)
        guard let original = fm.contents(atPath: url.path) else { return ("setup failed", "case \(k)") }
        let change: String
        let mutated: Data
        if file.hasSuffix(".json") {
            let restrict: ([JSONMutator.Step]) -> Bool = file == "config.json"
                ? { $0.first.map { "\($0)" } == "config" || $0.count == 1 } : { _ in true }
            guard let m = JSONMutator.mutate(original, &rng, restrict: restrict) else { return ("unchanged", "case \(k)") }
            (mutated, change) = (m.data, m.description)
        } else {
            let m = SafetensorsMutator.mutate([UInt8](original), &rng)
            (mutated, change) = (Data(m.bytes), m.description)
        }
        let label = "case \(k) \(folder.lastPathComponent)/\(file): \(change)"
        FileHandle.standardError.write(Data("\(label)\n".utf8))
        do { try mutated.write(to: url) } catch { return ("setup failed", label) }

        var outcome = classify { let r = try FixtureVerifier.verify(folder: dir); return r.passed ? "verify PASS" : "verify FAIL" }
        if file.hasSuffix(".safetensors") {
            let inspect = classify { let f = try SafetensorsFile(contentsOf: url); _ = f.summaryLines(); return "inspect ok" }
            outcome += " | " + inspect
        }
        if file == "config.json" {
            outcome += " | " + classify { try benchmark(config: mutated) }
        }
        return (outcome, label)
    }

    /// `bench forward`'s model and inputs for a mutated config at small input sizes (0.1 GB budget).
    static func benchmark(config: Data) throws -> String {
        let (cls, body) = try ModelConfigFile.parse(config)
        let family = try DiTFamilies.harness(forClass: cls)
        return try benchmark(family, cls, body)
    }

    static func benchmark<F: DiTFamilyHarness>(_: F.Type, _ cls: String, _ body: Data) throws -> String {
        let configuration = try F.Configuration.parse(body, className: cls)
        let small = BenchmarkInputs(F.benchmarkDefault.inputs.values.mapValues { min($0, 8) })
        _ = try ForwardBenchmark.make(F.self, configuration: configuration, inputs: small,
                                      memoryBudget: MemoryBudget(gigabytes: 0.1))
        return "bench ok"
    }

    /// The outcome kind of `body`: its result, the typed error's enum and case, or `UNTYPED` for anything else.
    static func classify(_ body: () throws -> String) -> String {
        do { return try body() } catch {
            let kind: String
            switch error {
            case let e as ModelLoadError: kind = "ModelLoadError." + caseName(e)
            case let e as VerifyError: kind = "VerifyError." + caseName(e)
            case let e as TensorError: kind = "TensorError." + caseName(e)
            case let e as CacheError: kind = "CacheError." + caseName(e)
            case let e as SafetensorsError: kind = "SafetensorsError." + caseName(e)
            default: return "UNTYPED \(type(of: error)): \(error)"
            }
            return kind
        }
    }

    /// The enum case of `e` (Mirror's label for a case with a payload).
    static func caseName(_ e: Any) -> String {
        Mirror(reflecting: e).children.first?.label ?? String(String(describing: e).prefix(40))
    }
}
