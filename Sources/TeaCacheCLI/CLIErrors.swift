import DiTModels
import Foundation
import Logging
import TeaCache
import TeaCacheDemo

/// Error reporting of every subcommand, in one style: `error: <what>: <why>; <what to do>` on stderr,
/// exit status ``usageStatus`` for a problem with the command line (unknown option, unusable value,
/// missing file named by an option) and ``runtimeStatus`` for a failure while running.
enum CLIErrors {
    /// Exit status of usage errors (BSD `EX_USAGE`, as ArgumentParser uses).
    static let usageStatus: Int32 = 64
    /// Exit status of failures while running.
    static let runtimeStatus: Int32 = 1

    /// The message and exit status of `error`.
    static func describe(_ error: any Error) -> (message: String, status: Int32) {
        if case let DemoError.teaCache(.poorCalibrationFit(r2, minimum)) = error {
            return ("calibration: the fit has R² = \(String(format: "%.4f", r2)), below the required \(minimum); "
                    + "record more seeds or steps, or rerun with --force to accept it", runtimeStatus)
        }
        if let e = error as? DemoError { return (e.description, e.isUsageError ? usageStatus : runtimeStatus) }
        if let e = error as? ModelLoadError { return (ErrorSummary.describe(e), runtimeStatus) }
        return ("\(error)", runtimeStatus)
    }

    /// Prints `error: <message>` on stderr and exits with the error's class status. The full error
    /// (a long mismatch list in full) is logged at debug level.
    static func exit(_ error: any Error, log: Logger?) -> Never {
        let (message, status) = describe(error)
        if let log {
            log.debug("failed", metadata: ["error": "\(String(reflecting: error))"])
            if let detail = (error as? DemoError)?.detail { log.debug("in full: \(detail)") }
            if let e = error as? ModelLoadError, ErrorSummary.describe(e) != e.description { log.debug("in full: \(e.description)") }
        }
        print(message: message)
        Foundation.exit(status)
    }

    /// A usage error: the message and where to read the command's options.
    static func usage(_ message: String, helpHint: String) -> Never {
        var text = message.trimmingCharacters(in: .whitespacesAndNewlines)
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        print(message: text + "; " + helpHint)
        Foundation.exit(usageStatus)
    }

    static func print(message: String) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    }
}
