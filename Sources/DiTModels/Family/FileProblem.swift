import Foundation

/// Why a path cannot be read, in plain words (instead of a Foundation error dump).
public enum FileProblem {
    /// "not found", "is a directory", "permission denied", or "unreadable" for anything else.
    public static func describe(_ url: URL) -> String {
        var isDirectory: ObjCBool = false
        let fm = FileManager.default
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else { return "not found" }
        if isDirectory.boolValue { return "is a directory" }
        if !fm.isReadableFile(atPath: url.path) { return "permission denied" }
        return "unreadable"
    }

    /// Why `url` cannot be written: its folder is missing or not writable, it is a directory, or "unwritable".
    public static func describeWrite(_ url: URL) -> String {
        var isDirectory: ObjCBool = false
        let fm = FileManager.default
        if fm.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            if isDirectory.boolValue { return "is a directory" }
            return fm.isWritableFile(atPath: url.path) ? "unwritable" : "permission denied"
        }
        let parent = url.deletingLastPathComponent()
        if !fm.fileExists(atPath: parent.path, isDirectory: &isDirectory) { return "its folder \(parent.path) does not exist" }
        if !isDirectory.boolValue { return "\(parent.path) is not a folder" }
        return fm.isWritableFile(atPath: parent.path) ? "unwritable" : "permission denied"
    }
}
