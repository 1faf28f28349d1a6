# srpmath for CMake-based ports (ESP32): mbedTLS comes with the port's own TLS.
add_library(usermod_srpmath INTERFACE)
target_sources(usermod_srpmath INTERFACE ${CMAKE_CURRENT_LIST_DIR}/srpmath.c)
target_include_directories(usermod_srpmath INTERFACE ${CMAKE_CURRENT_LIST_DIR})
target_link_libraries(usermod INTERFACE usermod_srpmath)
