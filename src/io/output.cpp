#include "io/output.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "mpq/error.h"

namespace mpq {
namespace fs = std::filesystem;
namespace {

// What an earlier mpq model directory (written before manifests existed) holds: recognised by
// its mpq_report.json, replaced file by file like a manifest.
const std::vector<std::string> kLegacyModelFiles = {"config.json", "model.safetensors", "tokenizer.gguf",
                                                    "tokenizer.json", "tokenizer_config.json", "mpq_report.json"};

fs::path canonical_path(const std::string& p) {
  std::error_code ec;
  fs::path c = fs::weakly_canonical(fs::absolute(p, ec), ec);
  if (ec) return fs::absolute(p).lexically_normal();
  return c;
}

// True when `inner` is `outer` or lies below it (both canonical).
bool is_within(const fs::path& inner, const fs::path& outer) {
  auto i = inner.begin();
  for (auto o = outer.begin(); o != outer.end(); ++o, ++i) {
    if (o->empty()) continue;  // a trailing separator
    if (i == inner.end() || *i != *o) return false;
  }
  return true;
}

// A plain entry name of a directory: no separators, not "." or "..".
bool plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos;
}

// The files an existing directory's manifest says mpq wrote there; nullopt when the directory
// is not an mpq output.
std::optional<std::vector<std::string>> read_manifest(const fs::path& dir) {
  std::error_code ec;
  const fs::path manifest = dir / kOutputManifest;
  if (fs::is_regular_file(manifest, ec)) {
    std::ifstream in(manifest, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      const nlohmann::json j = nlohmann::json::parse(ss.str());
      if (j.is_object() && j.value("written_by", "") == "mpq" && j.contains("files") && j["files"].is_array()) {
        std::vector<std::string> files;
        for (const auto& f : j["files"]) {
          if (f.is_string() && plain_name(f.get<std::string>())) files.push_back(f.get<std::string>());
        }
        return files;
      }
    } catch (const nlohmann::json::exception&) {
    }
    return std::nullopt;
  }
  const fs::path report = dir / "mpq_report.json";
  if (fs::is_regular_file(report, ec)) {
    std::ifstream in(report, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      const nlohmann::json j = nlohmann::json::parse(ss.str());
      if (j.is_object() && j.contains("modules") && j.contains("provenance")) return kLegacyModelFiles;
    } catch (const nlohmann::json::exception&) {
    }
  }
  return std::nullopt;
}

// Removes what mpq wrote in `dir` (by its manifest, sub-directories through their own manifests)
// and then the directory itself when nothing else is left in it.
void remove_mpq_output(const fs::path& dir, const std::vector<std::string>& files) {
  std::error_code ec;
  for (const std::string& name : files) {
    const fs::path p = dir / name;
    if (fs::is_directory(fs::symlink_status(p, ec))) {
      if (auto inner = read_manifest(p)) remove_mpq_output(p, *inner);
      continue;
    }
    fs::remove(p, ec);
  }
  fs::remove(dir / kOutputManifest, ec);
  if (fs::is_empty(dir, ec) && !ec) fs::remove(dir, ec);
}

void check_inputs(const std::string& out, const fs::path& canonical_out, bool out_is_dir, const OutputRules& rules) {
  std::error_code ec;
  for (const std::string& input : rules.inputs) {
    if (input.empty()) continue;
    const fs::path in = canonical_path(input);
    if (in == canonical_out || (fs::exists(out, ec) && fs::exists(input, ec) && fs::equivalent(out, input, ec))) {
      fail(out, "is an input of this command (" + input + "): refusing to overwrite it");
    }
    if (out_is_dir && is_within(in, canonical_out)) {
      fail(out, "contains an input of this command (" + input + "): refusing to write there");
    }
    if (!out_is_dir && fs::is_directory(in, ec) && is_within(canonical_out, in) && fs::exists(out, ec)) {
      fail(out, "is a file inside the input " + input + ": refusing to overwrite it");
    }
  }
}

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace

OutputRecognizer json_with_format(std::string format) {
  return [format](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      const nlohmann::json j = nlohmann::json::parse(ss.str());
      return j.is_object() && j.value("format", std::string()) == format;
    } catch (const nlohmann::json::exception&) {
      return false;
    }
  };
}

OutputRecognizer file_with_magic(std::string magic) {
  return [magic](const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::string head(magic.size(), '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    return in.gcount() == static_cast<std::streamsize>(magic.size()) && head == magic;
  };
}

void check_output_file(const std::string& path, const OutputRules& rules, const OutputRecognizer& is_ours) {
  check(!path.empty(), "--out", "empty output path");
  std::error_code ec;
  const fs::path out = canonical_path(path);
  check_inputs(path, out, /*out_is_dir=*/false, rules);
  const fs::path parent = fs::absolute(path).parent_path();
  if (!fs::is_directory(parent, ec)) fail(path, "its directory " + parent.string() + " does not exist");
  if (fs::is_directory(path, ec)) fail(path, "is a directory (a file name is expected)");
  if (fs::exists(fs::symlink_status(path, ec)) && !rules.force && !(is_ours && is_ours(path))) {
    fail(path, "exists and is not an earlier output of this kind from mpq: refusing to overwrite it "
               "(remove it, choose another name, or use --force)");
  }
}

void check_output_dir(const std::string& dir, const OutputRules& rules) {
  check(!dir.empty(), "--out", "empty output path");
  std::error_code ec;
  const fs::path out = canonical_path(dir);
  check_inputs(dir, out, /*out_is_dir=*/true, rules);
  if (is_within(canonical_path(fs::current_path().string()), out)) {
    fail(dir, "is the current directory or one of its parents: refusing to write an output there");
  }
  if (!fs::exists(fs::symlink_status(dir, ec))) return;
  if (!fs::is_directory(dir, ec)) fail(dir, "exists and is not a directory");
  if (fs::is_empty(dir, ec) || rules.force || read_manifest(dir)) return;
  fail(dir, std::string("exists and is not an mpq output (no ") + kOutputManifest +
                "): refusing to write into it (choose a new directory, or use --force: only the files mpq "
                "writes are replaced, nothing else in it is touched)");
}

std::string temp_path_beside(const std::string& path) {
  fs::path p = fs::path(path).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();  // "dir/" -> "dir"
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string prefix = "." + p.filename().string() + ".mpq-tmp-";
  std::error_code ec;
  // Sweep temporaries of this target left by runs that were killed (their process is gone).
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::error_code rm;
      fs::remove_all(it->path(), rm);
    }
  }
  return (dir / (prefix + std::to_string(::getpid()) + "-" + std::to_string(g_temp_counter++))).string();
}

// ---- StagedFile

StagedFile::StagedFile(std::string path) : path_(std::move(path)), temp_(temp_path_beside(path_)) {}

StagedFile::~StagedFile() {
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void StagedFile::commit() {
  std::error_code ec;
  fs::rename(temp_, path_, ec);
  if (ec) {
    fs::remove(temp_, ec);
    fail(path_, "cannot move the finished file into place: " + ec.message());
  }
  committed_ = true;
}

void write_file_atomically(const std::string& path, const std::string& bytes) {
  StagedFile staged(path);
  {
    std::ofstream out(staged.temp(), std::ios::binary | std::ios::trunc);
    if (!out) fail(path, "cannot create its temporary file " + staged.temp());
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) fail(path, "write error (disk full?)");
  }
  staged.commit();
}

// ---- StagedDirectory

StagedDirectory::StagedDirectory(std::string dir, std::string kind) : dir_(std::move(dir)), kind_(std::move(kind)) {
  std::error_code ec;
  const fs::path parent = fs::absolute(dir_).lexically_normal().parent_path();
  fs::create_directories(parent, ec);
  if (ec) fail(dir_, "cannot create its parent directory: " + ec.message());
  temp_ = temp_path_beside(dir_);
  fs::create_directory(temp_, ec);
  if (ec) fail(dir_, "cannot create the temporary directory " + temp_ + ": " + ec.message());
}

StagedDirectory::~StagedDirectory() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(temp_, ec);  // all of it written by this process
  }
}

std::string StagedDirectory::path(const std::string& name) {
  check(plain_name(name) && name != kOutputManifest, dir_, "invalid output entry name '" + name + "'");
  if (std::find(names_.begin(), names_.end(), name) == names_.end()) names_.push_back(name);
  return (fs::path(temp_) / name).string();
}

std::string StagedDirectory::final_names(std::string message) const {
  for (size_t at = message.find(temp_); at != std::string::npos; at = message.find(temp_, at + dir_.size())) {
    message.replace(at, temp_.size(), dir_);
  }
  return message;
}

void StagedDirectory::commit(const OutputRules& rules) {
  std::vector<std::string> present;  // entries actually written (a name may be reserved unused)
  std::error_code ec;
  for (const std::string& name : names_) {
    if (fs::exists(fs::symlink_status(fs::path(temp_) / name, ec))) present.push_back(name);
  }
  const nlohmann::json manifest = {{"written_by", "mpq"}, {"kind", kind_}, {"files", present}};
  write_file_atomically((fs::path(temp_) / kOutputManifest).string(), manifest.dump(1) + "\n");
  check_output_dir(dir_, rules);
  if (!fs::exists(fs::symlink_status(dir_, ec)) || fs::is_empty(dir_, ec)) {
    fs::rename(temp_, dir_, ec);
    if (ec) fail(dir_, "cannot move the finished directory into place: " + ec.message());
    committed_ = true;
    return;
  }
  // An earlier mpq output (or --force): remove what mpq wrote there, move the new entries in.
  if (auto old = read_manifest(dir_)) {
    for (const std::string& name : *old) {
      const fs::path p = fs::path(dir_) / name;
      if (fs::is_directory(fs::symlink_status(p, ec))) {
        if (auto inner = read_manifest(p)) remove_mpq_output(p, *inner);
      } else {
        fs::remove(p, ec);
      }
    }
  }
  for (const std::string& name : present) {
    const fs::path target = fs::path(dir_) / name;
    if (fs::is_directory(fs::symlink_status(target, ec))) {
      fail(dir_, "holds a directory '" + name + "' that mpq did not write: refusing to replace it");
    }
    fs::rename(fs::path(temp_) / name, target, ec);
    if (ec) fail(dir_, "cannot move '" + name + "' into place: " + ec.message());
  }
  fs::rename(fs::path(temp_) / kOutputManifest, fs::path(dir_) / kOutputManifest, ec);
  if (ec) fail(dir_, "cannot move the manifest into place: " + ec.message());
  fs::remove(temp_, ec);
  committed_ = true;
}

}  // namespace mpq
