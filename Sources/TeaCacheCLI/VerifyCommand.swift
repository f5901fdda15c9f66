import ArgumentParser
import DiTHarness
import DiTModels
import Foundation
import Logging

/// `teacache verify DIR`: runs a model family against a reference fixture folder (fixtures FORMAT.md)
/// (and its cache-policy recordings, if any) and prints one line per comparison, then `verify FAMILY: PASS|FAIL`.
/// Exits 0 only on PASS.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Check the forward pass and TeaCache decisions against a diffusers fixture folder.",
        discussion: "DIR holds config.json, model.safetensors, forward.{json,safetensors} and "
            + "sampling.{json,safetensors} of one model family. The family is taken from the files' "
            + "\"family\" field, or from config.json's class. With policy_refs.{json,safetensors} (a cache-policy "
            + "recording) every record whose policy is implemented is checked too: identical per-call decisions and "
            + "the final latent within rel L2 1e-4; the others are named."
    )

    @Argument(help: "A fixture family folder.")
    var directory: String

    @OptionGroup var precision: PrecisionOptions

    @OptionGroup var vectorPaths: VectorPathOptions

    @OptionGroup var logging: LoggingOptions

    func run() throws {
        try vectorPaths.apply()
        let log = logging.logger("verify")
        let start = Date()
        log.info("verifying fixture folder", metadata: ["folder": "\(directory)"])
        // A DIR that is not a folder is a problem with the command line, reported like every other one.
        var isDirectory: ObjCBool = false
        if !FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) || !isDirectory.boolValue {
            let problem = isDirectory.boolValue || !FileManager.default.fileExists(atPath: directory) ? "not found" : "not a folder"
            CLIErrors.usage("verify \(directory): \(problem); give a fixture folder (config.json, model.safetensors, "
                            + "forward.*, sampling.* or policy_refs.*)", helpHint: "see 'teacache verify --help'")
        }
        let report: VerifyReport
        do {
            report = try FixtureVerifier.verify(folder: URL(fileURLWithPath: directory), precision: precision.precision)
        } catch {
            log.debug("verification could not start", metadata: ["error": "\(String(reflecting: error))"])
            FileHandle.standardError.write(Data("error: verify \(directory): \(error); check the folder against the fixture format (Tests/Fixtures/FORMAT.md)\n".utf8))
            print("verify \(Self.familyHint(URL(fileURLWithPath: directory))): FAIL")
            throw ExitCode.failure
        }
        if precision.precision != .float32 { print(precision.reportLine) }
        if vectorPaths.avx2Only { print(vectorPaths.reportLine) }
        for line in report.lines { print(line) }
        log.info("verify done", metadata: ["passed": "\(report.passed)", "elapsed": "\(secondsSince(start))"])
        if !report.passed { throw ExitCode.failure }
    }

    /// The family name for the last line when the folder could not even be loaded: the `family` field
    /// of forward.json or sampling.json when readable, else the folder's name.
    static func familyHint(_ folder: URL) -> String {
        for file in ["forward.json", "sampling.json"] {
            // Only a hint for the last line of a failed verify: the failure itself was already reported.
            if let data = try? Data(contentsOf: folder.appendingPathComponent(file)),
               let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
               let family = object["family"] as? String, !family.isEmpty {
                return family
            }
        }
        return folder.standardizedFileURL.lastPathComponent
    }
}
