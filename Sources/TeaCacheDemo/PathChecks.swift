import DiTModels
import Foundation

/// Checks of the paths named by options, made before any model runs, with the plain reasons of
/// `FileProblem` (never a Foundation error dump).
public enum PathChecks {
    /// An input file named by `flag`: it must exist, be a file and be readable.
    public static func inputFile(_ path: String, flag: String, what: String) throws(DemoError) {
        let problem = FileProblem.describe(URL(fileURLWithPath: path))
        guard problem == "unreadable" else {   // exists, is a file, is readable
            throw .invalidOption("\(flag) \(path): \(problem); give \(what)")
        }
    }

    /// An input path (file or folder) named by `flag`: it must exist.
    public static func inputPath(_ path: String, flag: String, what: String) throws(DemoError) {
        guard FileManager.default.fileExists(atPath: path) else {
            throw .invalidOption("\(flag) \(path): not found; give \(what)")
        }
    }

    /// An output named by `flag` that will be created (with its missing parent folders): the nearest
    /// existing ancestor must be a writable folder, and the path itself, if it exists, a folder when
    /// `folder` is true and a file otherwise.
    public static func output(_ path: String, flag: String, folder: Bool) throws(DemoError) {
        let fm = FileManager.default
        var url = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: url.path, isDirectory: &isDirectory) {
            if isDirectory.boolValue != folder {
                throw .invalidOption("\(flag) \(path): \(folder ? "is a file" : "is a directory"); give a "
                                     + (folder ? "folder path" : "file path"))
            }
            guard fm.isWritableFile(atPath: url.path) else {
                throw .invalidOption("\(flag) \(path): permission denied; choose a path you can write to")
            }
            return
        }
        repeat { url = url.deletingLastPathComponent() } while !fm.fileExists(atPath: url.path, isDirectory: &isDirectory) && url.path != "/"
        guard isDirectory.boolValue else {
            throw .invalidOption("\(flag) \(path): \(url.path) is a file, not a folder; choose another path")
        }
        guard fm.isWritableFile(atPath: url.path) else {
            throw .invalidOption("\(flag) \(path): permission denied in \(url.path); choose a folder you can write to")
        }
    }

    /// Why writing `url` failed, in plain words.
    static func writeFailure(_ url: URL) -> String { "cannot write \(url.path): \(FileProblem.describeWrite(url))" }
}
