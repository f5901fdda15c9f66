import Foundation

/// A progress line for one sampling run, written to a stream (stderr by default).
///
/// On a terminal it redraws one line with carriage returns: label, bar, steps, elapsed seconds and ETA.
/// Otherwise (a pipe or a file) it prints nothing while running and one summary line at the end.
public final class ProgressBar {
    private let label: String
    private let interactive: Bool
    private let write: (String) -> Void
    private let width: Int

    /// A bar for a run called `label`; `interactive` chooses carriage-return redraws.
    public init(label: String, interactive: Bool, width: Int = 28, write: @escaping (String) -> Void) {
        self.label = label
        self.interactive = interactive
        self.width = max(1, width)
        self.write = write
    }

    /// A bar on stderr, interactive when stderr is a terminal.
    public static func standardError(label: String) -> ProgressBar {
        ProgressBar(label: label, interactive: isatty(STDERR_FILENO) == 1) {
            FileHandle.standardError.write(Data($0.utf8))
        }
    }

    /// The text of the bar after `step` of `total` steps at `elapsed` seconds.
    public func line(step: Int, total: Int, elapsed: Double) -> String {
        let total = max(total, 1), step = min(max(step, 0), total)
        let filled = width * step / total
        let eta = step > 0 ? elapsed / Double(step) * Double(total - step) : 0
        return "\(label) [" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
            + "] \(step)/\(total) " + String(format: "%.1fs ETA %.1fs", elapsed, eta)
    }

    /// Called after each step.
    public func update(step: Int, total: Int, elapsed: Double) {
        guard interactive else { return }
        write("\r" + line(step: step, total: total, elapsed: elapsed) + "\u{1B}[K")
    }

    /// Ends the run: finishes the redrawn line, or prints the summary line.
    public func finish(steps: Int, wallSeconds: Double) {
        if interactive { write("\n") } else {
            write("\(label): \(steps) steps in " + String(format: "%.2fs", wallSeconds) + "\n")
        }
    }
}
