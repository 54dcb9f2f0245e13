// A read-only memory mapping of a whole file. Weights are read straight from the page cache:
// loading a model costs no copy until a tensor is converted.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace mpq {

class MappedFile {
 public:
  MappedFile() = default;
  // Maps `path`; throws mpq::Error naming the path when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release();
  std::string path_;              // the file mapped, for error messages
  const uint8_t* data_ = nullptr;  // first byte of the mapping (nullptr for an empty file)
  uint64_t size_ = 0;              // file size in bytes
};

}  // namespace mpq
