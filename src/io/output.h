// Every file and directory mpq writes goes through here. The rules that keep a user's data safe:
//
//  1. Nothing is written in place. Bytes go to a temporary name beside the target,
//     ".<name>.mpq-tmp-<pid>-<n>" in the same directory (so the final rename is atomic: same file
//     system), which never collides with a user's file or with another run, and are renamed into
//     place only once complete. Every failure path removes the temporary; a run killed with
//     SIGKILL leaves it behind, and the next run writing the same target removes temporaries of
//     that target whose process is gone (they are mpq's own by their name).
//  2. No input is ever overwritten, even with --force: an output that is a file the command reads,
//     an output directory that is or contains an input, the current directory or one of its
//     parents, and an existing file inside an input directory are all refused before any work.
//  3. Nothing mpq did not write is replaced or deleted. An existing output file is replaced only
//     when it is recognisably an earlier mpq output of the same kind (or with --force); an existing
//     output directory only when it holds mpq's manifest (kOutputManifest, listing the files mpq
//     wrote there) or an earlier mpq model directory (mpq_report.json), or with --force; and even
//     then only the files that manifest names are removed: a user's other files stay.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace mpq {

// The manifest mpq writes into every output directory: {"written_by": "mpq", "kind": ...,
// "files": [...]} (no timestamps: the same run gives the same bytes).
inline constexpr const char* kOutputManifest = ".mpq-output.json";

struct OutputRules {
  std::vector<std::string> inputs;  // every file or directory the command reads
  bool force = false;               // --force: replace an existing output mpq cannot recognise
};

// True when the existing file at `path` is an earlier mpq output of the expected kind (a plan, a
// sensitivity file, saved logits, ...). nullptr: no kind is recognisable (only --force replaces).
using OutputRecognizer = std::function<bool(const std::string& path)>;

// Recognisers of earlier mpq outputs: a JSON object whose "format" is `format` ("mpq-plan", ...);
// a file that starts with the bytes `magic`.
OutputRecognizer json_with_format(std::string format);
OutputRecognizer file_with_magic(std::string magic);

// Checks, before any work, that `path` may be written as a file under `rules`; throws mpq::Error
// naming `path` otherwise (an input, an existing directory, an existing file that `is_ours` does
// not recognise without --force, a missing parent directory).
void check_output_file(const std::string& path, const OutputRules& rules,
                       const OutputRecognizer& is_ours = nullptr);
// The same for an output directory (see rule 2 and 3 above).
void check_output_dir(const std::string& dir, const OutputRules& rules);

// A unique temporary path beside `path` (rule 1), after removing stale temporaries of `path` left
// by runs that no longer exist. The file itself is not created.
std::string temp_path_beside(const std::string& path);

// A file written under a temporary name and renamed over `path` by commit(); destroyed
// uncommitted (an exception on the way), it removes the temporary.
class StagedFile {
 public:
  explicit StagedFile(std::string path);
  ~StagedFile();
  StagedFile(const StagedFile&) = delete;
  StagedFile& operator=(const StagedFile&) = delete;
  const std::string& path() const { return path_; }
  const std::string& temp() const { return temp_; }  // write here
  void commit();  // rename into place; throws mpq::Error naming path() on failure

 private:
  std::string path_, temp_;
  bool committed_ = false;
};

// Writes `bytes` to `path` through a StagedFile. Throws mpq::Error naming the file on any error.
void write_file_atomically(const std::string& path, const std::string& bytes);

// An output directory built under a temporary name beside `dir`, then moved into place by
// commit(): renamed when `dir` does not exist; otherwise (an earlier mpq output, or --force) the
// files of the old manifest are removed and the new ones moved in one by one. Destroyed
// uncommitted, it removes its temporary tree (all of it written by this process).
class StagedDirectory {
 public:
  // `kind` names what the directory holds ("model", "pareto", ...), for the manifest.
  StagedDirectory(std::string dir, std::string kind);
  ~StagedDirectory();
  StagedDirectory(const StagedDirectory&) = delete;
  StagedDirectory& operator=(const StagedDirectory&) = delete;
  const std::string& dir() const { return dir_; }
  const std::string& temp() const { return temp_; }
  // The temporary path of entry `name` (a file, or a sub-directory that is itself an mpq output
  // with its own manifest); the name goes into the manifest.
  std::string path(const std::string& name);
  // `message` with the temporary directory's path replaced by the final one, for errors raised
  // while writing inside it (a user knows the output's name, not the temporary's).
  std::string final_names(std::string message) const;
  // Moves the directory into place. Checks the rules again (the target may have appeared since
  // check_output_dir); throws mpq::Error naming dir() on failure.
  void commit(const OutputRules& rules);

 private:
  std::string dir_, kind_, temp_;
  std::vector<std::string> names_;
  bool committed_ = false;
};

}  // namespace mpq
