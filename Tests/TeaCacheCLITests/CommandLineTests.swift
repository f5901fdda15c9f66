import ArgumentParser
import Foundation
import Logging
import Testing
@testable import TeaCacheCLI

/// The command line as a user types it: options reach validation with a message that says what to fix,
/// and the shared options (`--log-level`, `--threads`) parse the same way in every subcommand.
@Suite struct CommandLineTests {
    /// The message ArgumentParser would print for `arguments`, or nil when they parse and validate.
    static func rejection(_ arguments: [String]) -> String? {
        do {
            _ = try TeaCacheCommand.parseAsRoot(arguments)
            return nil
        } catch {
            return TeaCacheCommand.message(for: error)
        }
    }

    @Test(arguments: [
        (["demo", "--steps", "0"], "--steps 0: must be at least 1; give the number of sampling steps"),
        (["demo", "--threads", "0"], "--threads 0: must be between 1 and"),
        (["calibrate", "--threads", "100000"], "--threads 100000: must be between 1 and"),
        (["bench", "forward", "--config", "x.json", "--repeats", "0"], "--repeats 0: must be at least 1; give the number of timed"),
        (["bench", "kernels", "--repeats", "0"], "--repeats 0: must be at least 1; give the number of timed"),
        (["bench", "kernels", "--linear", "1024x512"], "--linear 1024x512: give ROWSxINxOUT, three integers from 1 to 65536"),
        (["bench", "kernels", "--linear", "0x512x512"], "--linear 0x512x512: give ROWSxINxOUT"),
        (["inspect", "f.safetensors", "--log-level", "loud"], "loud"),
        (["demo", "--memory-budget", "-1"], "--memory-budget -1: must be a positive number of gigabytes"),
        (["calibrate", "--memory-budget", "nan"], "--memory-budget nan: must be a positive number of gigabytes"),
        (["bench", "forward", "--config", "x.json", "--memory-budget", "0"], "--memory-budget 0: must be a positive"),
    ])
    func badOptionsAreRejectedWithAMessage(arguments: [String], expected: String) throws {
        let message = try #require(Self.rejection(arguments), "\(arguments) should be rejected")
        #expect(message.contains(expected), "\(message)")
    }

    @Test func logLevelParsesInEverySubcommand() throws {
        for (arguments, type) in [(["verify", "dir"], "verify"), (["inspect", "f"], "inspect"),
                                  (["demo"], "demo"), (["calibrate"], "calibrate"),
                                  (["bench", "kernels"], "kernels"), (["bench", "forward", "--config", "c"], "forward")] {
            let command = try TeaCacheCommand.parseAsRoot(arguments + ["--log-level", "debug"])
            let logging: LoggingOptions? = switch command {
            case let c as VerifyCommand: c.logging
            case let c as InspectCommand: c.logging
            case let c as DemoCommand: c.logging
            case let c as CalibrateCommand: c.logging
            case let c as BenchKernelsCommand: c.logging
            case let c as BenchForwardCommand: c.logging
            default: nil
            }
            #expect(logging?.logLevel == .debug, "\(type)")
            #expect(logging?.logger(type).logLevel == .debug)
        }
        let quiet = try #require(try TeaCacheCommand.parseAsRoot(["inspect", "f"]) as? InspectCommand)
        #expect(quiet.logging.logLevel == .warning, "diagnostics are off by default")
    }

    @Test func modelOptionsReachTheLibrary() throws {
        let demo = try #require(try TeaCacheCommand.parseAsRoot(
            ["demo", "--model", "wan21", "--steps", "9", "--seed", "4", "--weights", "/w"]) as? DemoCommand)
        let source = demo.modelOptions.source
        #expect(source.family == "wan21" && source.steps == 9 && source.seed == 4 && source.weightsPath == "/w")
        #expect(source.configPath == nil)
    }

    /// Negative values are values, not unknown options, so the library's validation explains them.
    @Test func negativeNumbersReachValidation() throws {
        let demo = try #require(try TeaCacheCommand.parseAsRoot(["demo", "--thresholds", "-1"]) as? DemoCommand)
        #expect(demo.thresholds == "-1")
        let calibrate = try #require(try TeaCacheCommand.parseAsRoot(["calibrate", "--minimum-r-squared", "-0.5"]) as? CalibrateCommand)
        #expect(calibrate.minimumRSquared == -0.5)
    }
}
