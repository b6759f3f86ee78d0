# Install rules (included by CMakeLists.txt after the targets).
#
#   cmake --install build [--prefix DIR]      (default prefix: /usr/local)
#
# bin/odyssey-dist, odyssey-convert, and the launch scripts as commands
# (odyssey-run, odyssey-sbatch, odyssey-scaling); share/odyssey-dist/configs;
# lib/libodyssey.a with include/odyssey/*.h, a pkg-config file
# (lib/pkgconfig/odyssey-dist.pc) and a CMake package (find_package(odyssey-dist),
# target odyssey::odyssey); a man page made from --help (when help2man is
# installed) and bash completion of options and config keys.
include(GNUInstallDirs)

set(ODY_CONFIG_INSTALL_DIR ${CMAKE_INSTALL_DATADIR}/odyssey-dist/configs)
set(ODY_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/odyssey-dist)

# MODEL/NAME configs: the program looks beside itself (bin/../share/...), so
# a prefix given to `cmake --install --prefix` or moved later works, then in
# the configured prefix (src/io/config.c).
file(RELATIVE_PATH _ody_configs_from_bin ${CMAKE_INSTALL_FULL_BINDIR}
     ${CMAKE_INSTALL_FULL_DATADIR}/odyssey-dist/configs)
set(_ody_config_defs ODY_CONFIG_DIR_FROM_BIN="${_ody_configs_from_bin}"
    ODY_CONFIG_INSTALL_DIR="${CMAKE_INSTALL_FULL_DATADIR}/odyssey-dist/configs")
set_property(SOURCE ${PROJECT_SOURCE_DIR}/src/io/config.c APPEND PROPERTY
             COMPILE_DEFINITIONS ${_ody_config_defs})
target_compile_definitions(odyssey-dist PRIVATE ${_ody_config_defs})

# ------------------------------------------------------------ programs, data
install(TARGETS odyssey-dist odyssey-convert RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS launch/run.sh DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME odyssey-run)
install(PROGRAMS launch/slurm.sbatch DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME odyssey-sbatch)
install(PROGRAMS launch/scaling.py DESTINATION ${CMAKE_INSTALL_BINDIR} RENAME odyssey-scaling)
install(DIRECTORY configs/ DESTINATION ${ODY_CONFIG_INSTALL_DIR}
        FILES_MATCHING PATTERN "*.yaml" PATTERN "README.md")

# ------------------------------------------------------- library and headers
install(TARGETS odyssey EXPORT odyssey-targets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/odyssey DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

# pkg-config: everything the static library links, read from the target's
# link line, so a dependency added to CMakeLists.txt reaches the .pc file.
# The library is static only, so its dependencies are in Requires and Libs
# (a plain `pkg-config --libs` links; --static gives the same).
function(ody_pc_from_link_line)
  set(requires "")
  set(libs "")
  get_target_property(link odyssey LINK_LIBRARIES)
  foreach(lib IN LISTS link)
    if(lib MATCHES "^PkgConfig::(.+)$")
      list(APPEND requires ${${CMAKE_MATCH_1}_MODULE_NAME})
    elseif(lib STREQUAL "MPI::MPI_C")
      pkg_check_modules(_ODY_PC_MPI QUIET ompi-c)
      if(_ODY_PC_MPI_FOUND)
        list(APPEND requires ompi-c)
      else()
        list(APPEND libs ${MPI_C_LIBRARIES})
      endif()
    elseif(lib STREQUAL "ZLIB::ZLIB")
      list(APPEND requires zlib)
    elseif(lib STREQUAL "Threads::Threads")
      list(APPEND libs ${CMAKE_THREAD_LIBS_INIT})
    elseif(lib STREQUAL "OpenMP::OpenMP_C")
      list(APPEND libs ${OpenMP_C_FLAGS})
    elseif(TARGET ${lib})
      get_target_property(type ${lib} TYPE)
      if(type STREQUAL "INTERFACE_LIBRARY")
        list(APPEND libs "$<JOIN:$<TARGET_PROPERTY:${lib},INTERFACE_LINK_LIBRARIES>, >")
      else()
        list(APPEND libs "$<TARGET_LINKER_FILE:${lib}>")
      endif()
    elseif(IS_ABSOLUTE "${lib}" OR lib MATCHES "^-")
      list(APPEND libs "${lib}")
    else()
      list(APPEND libs "-l${lib}")
    endif()
  endforeach()
  if(ODY_SANITIZE) # the archive's objects call the sanitizer runtimes
    list(APPEND libs -fsanitize=address,undefined)
  endif()
  list(REMOVE_DUPLICATES requires)
  list(JOIN requires " " ODY_PC_REQUIRES)
  list(JOIN libs " " ODY_PC_LIBS)
  set(ODY_PC_CFLAGS "-D_POSIX_C_SOURCE=200809L")
  file(RELATIVE_PATH ODY_PC_PREFIX_FROM_PCDIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig
       ${CMAKE_INSTALL_PREFIX})
  string(REGEX REPLACE "/$" "" ODY_PC_PREFIX_FROM_PCDIR "${ODY_PC_PREFIX_FROM_PCDIR}")
  if(ODY_PC_PREFIX_FROM_PCDIR STREQUAL "")
    set(ODY_PC_PREFIX_FROM_PCDIR ".")
  endif()
  configure_file(${PROJECT_SOURCE_DIR}/cmake/odyssey-dist.pc.in
                 ${PROJECT_BINARY_DIR}/odyssey-dist.pc.in @ONLY)
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/odyssey-dist.pc
       INPUT ${PROJECT_BINARY_DIR}/odyssey-dist.pc.in)
endfunction()
ody_pc_from_link_line()
install(FILES ${PROJECT_BINARY_DIR}/odyssey-dist.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# The sanitizer build's archive calls the sanitizer runtimes: whoever links
# the installed one links them too.
if(ODY_SANITIZE)
  target_link_options(odyssey INTERFACE $<INSTALL_INTERFACE:-fsanitize=address,undefined>)
endif()

# CMake package: find_package(odyssey-dist) gives odyssey::odyssey. The
# config first finds the targets the library links again, from the same
# link line: the packages CMake knows, pkg-config modules, and any other
# imported target as the file the build linked.
function(ody_cmake_config_from_link_line)
  set(body "include(CMakeFindDependencyMacro)\n")
  get_target_property(link odyssey LINK_LIBRARIES)
  foreach(lib IN LISTS link)
    if(lib MATCHES "^PkgConfig::(.+)$")
      string(APPEND body "find_dependency(PkgConfig)\n"
        "pkg_check_modules(${CMAKE_MATCH_1} REQUIRED QUIET IMPORTED_TARGET "
        "${${CMAKE_MATCH_1}_MODULE_NAME})\n")
    elseif(lib STREQUAL "MPI::MPI_C")
      string(APPEND body "find_dependency(MPI COMPONENTS C)\n")
    elseif(lib STREQUAL "ZLIB::ZLIB")
      string(APPEND body "find_dependency(ZLIB)\n")
    elseif(lib STREQUAL "Threads::Threads")
      string(APPEND body "find_dependency(Threads)\n")
    elseif(lib STREQUAL "OpenMP::OpenMP_C")
      string(APPEND body "find_dependency(OpenMP COMPONENTS C)\n")
    elseif(TARGET ${lib})
      get_target_property(type ${lib} TYPE)
      if(type STREQUAL "INTERFACE_LIBRARY")
        set(kind INTERFACE)
        set(location "")
      else()
        set(kind UNKNOWN)
        set(location "IMPORTED_LOCATION \"$<TARGET_LINKER_FILE:${lib}>\"")
      endif()
      string(APPEND body "if(NOT TARGET ${lib})\n"
        "  add_library(${lib} ${kind} IMPORTED)\n"
        "  set_target_properties(${lib} PROPERTIES ${location}\n"
        "    INTERFACE_LINK_LIBRARIES \"$<TARGET_PROPERTY:${lib},INTERFACE_LINK_LIBRARIES>\")\n"
        "endif()\n")
    endif()
  endforeach()
  string(APPEND body "include(\"\${CMAKE_CURRENT_LIST_DIR}/odyssey-targets.cmake\")\n")
  file(GENERATE OUTPUT ${PROJECT_BINARY_DIR}/odyssey-dist-config.cmake CONTENT
       "# find_package(odyssey-dist): the static library as odyssey::odyssey.\n${body}")
endfunction()
ody_cmake_config_from_link_line()
install(EXPORT odyssey-targets NAMESPACE odyssey:: DESTINATION ${ODY_CMAKE_INSTALL_DIR})
include(CMakePackageConfigHelpers)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/odyssey-dist-config-version.cmake
                                 COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/odyssey-dist-config.cmake
              ${PROJECT_BINARY_DIR}/odyssey-dist-config-version.cmake
        DESTINATION ${ODY_CMAKE_INSTALL_DIR})

# ----------------------------------------------- man page and bash completion
# Both run the freshly built program (--help, --config-reference: no MPI).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/odyssey-dist.1
    COMMAND ${CMAKE_COMMAND} -E env ASAN_OPTIONS=detect_leaks=0
            ${HELP2MAN} --no-info --section=1
            --include=${PROJECT_SOURCE_DIR}/cmake/odyssey-dist.h2m
            "--name=data-parallel neural-network trainer for MPI"
            --output=${PROJECT_BINARY_DIR}/odyssey-dist.1 $<TARGET_FILE:odyssey-dist>
    DEPENDS odyssey-dist ${PROJECT_SOURCE_DIR}/cmake/odyssey-dist.h2m VERBATIM)
  add_custom_target(odyssey-man ALL DEPENDS ${PROJECT_BINARY_DIR}/odyssey-dist.1)
  install(FILES ${PROJECT_BINARY_DIR}/odyssey-dist.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(STATUS "help2man not found: no man page (apt-get install help2man)")
endif()

set(_ody_completion ${PROJECT_BINARY_DIR}/completion/odyssey-dist)
add_custom_command(OUTPUT ${_ody_completion}
  COMMAND ${CMAKE_COMMAND} -DPROGRAM=$<TARGET_FILE:odyssey-dist>
          -DTEMPLATE=${PROJECT_SOURCE_DIR}/launch/completion.bash.in -DOUTPUT=${_ody_completion}
          -P ${PROJECT_SOURCE_DIR}/cmake/completion.cmake
  DEPENDS odyssey-dist ${PROJECT_SOURCE_DIR}/launch/completion.bash.in
          ${PROJECT_SOURCE_DIR}/cmake/completion.cmake VERBATIM)
add_custom_target(odyssey-completion ALL DEPENDS ${_ody_completion})
# bash-completion loads completions/<command> on first use: one file per command.
foreach(command odyssey-dist odyssey-run)
  install(FILES ${_ody_completion} DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions
          RENAME ${command})
endforeach()
