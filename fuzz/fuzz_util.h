// Shared by the libFuzzer harnesses of fuzz/ (see fuzz/README.md): the inputs go through the same
// entry points a user's files reach (paths on disk), so each harness writes its input into a
// private temporary directory first.
//
// Outcome policy, the same for every harness: an mpq::Error is the parser refusing a bad file, a
// normal outcome. Anything else that escapes (std::bad_alloc, nlohmann::json exceptions,
// std::out_of_range, ...) is a finding: libFuzzer reports the uncaught exception as a crash.
#pragma once

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "mpq/error.h"

namespace mpq::fuzz {

// Separates the files of a multi-file input ("config.json" SEP "model.safetensors"). A text
// marker rather than a length prefix: mutations inside the first file then do not shift the
// second one. fuzz/*.dict list it so that the fuzzer can also insert it.
inline constexpr std::string_view kFileSeparator = "\n%%mpq-fuzz-next-file%%\n";

// The parts of `data` between separators (at most `max_parts`; the last part keeps any further
// separators as content).
inline std::vector<std::string_view> split_files(const uint8_t* data, size_t size, size_t max_parts) {
  std::vector<std::string_view> parts;
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  while (parts.size() + 1 < max_parts) {
    const size_t at = rest.find(kFileSeparator);
    if (at == std::string_view::npos) break;
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kFileSeparator.size());
  }
  parts.push_back(rest);
  return parts;
}

// A directory of this process, removed when the process ends. Under $TMPDIR, else /dev/shm (a
// RAM file system: the harnesses write a file per execution), else /tmp.
class ScratchDir {
 public:
  ScratchDir() {
    const char* env = std::getenv("TMPDIR");
    std::string base = env != nullptr && *env != '\0' ? env
                       : std::filesystem::is_directory("/dev/shm") ? "/dev/shm"
                                                                   : "/tmp";
    std::string templ = base + "/mpq-fuzz-XXXXXX";
    if (::mkdtemp(templ.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = templ;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The process's scratch directory (created on first use).
inline const ScratchDir& scratch() {
  static const ScratchDir dir;
  return dir;
}

// Writes `bytes` to `path` (truncating). Aborts on I/O errors: the harness itself is broken then.
inline void write_file(const std::string& path, std::string_view bytes) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr || std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size() || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
}

inline void remove_file(const std::string& path) { ::unlink(path.c_str()); }

// Runs `body`; an mpq::Error is the expected way to refuse bad input. Returns whether `body`
// completed without one.
template <class Body>
bool accepts(Body&& body) {
  try {
    body();
    return true;
  } catch (const mpq::Error&) {
    return false;
  }
}

}  // namespace mpq::fuzz
