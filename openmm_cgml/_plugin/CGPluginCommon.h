#ifndef OPENMM_CGML_PLUGIN_COMMON_H_
#define OPENMM_CGML_PLUGIN_COMMON_H_
/*
 * openmm_cgml: what the plugin's forces share besides the Verlet list: the CPU platform's thread count, the
 * particle-count check, and the error convention of the C interface (ctypes): a call returns -1 and leaves its
 * message for cgml_last_error().
 */
#include "openmm/OpenMMException.h"
#include "openmm/internal/ContextImpl.h"
#include <algorithm>
#include <exception>
#include <sstream>
#include <string>

namespace OpenMMCGML {

/** The CPU platform's "Threads" property of this Context (1 on other platforms). */
inline int platformThreads(OpenMM::ContextImpl& context) {
    if (context.getPlatform().getName() != "CPU")
        return 1;
    try {
        return std::max(1, std::stoi(context.getPlatform().getPropertyValue(context.getOwner(), "Threads")));
    }
    catch (...) {
        return 1;
    }
}

/** Throw unless the force has as many particles as the System. */
inline void checkParticleCount(const std::string& force, int system, int own) {
    if (own != system) {
        std::stringstream msg;
        msg << force << " must have exactly as many particles as the System it belongs to (" << system << "), has "
            << own;
        throw OpenMM::OpenMMException(msg.str());
    }
}

void cgmlSetLastError(const std::string& message);   // CGPairTableForce.cpp

/** Run body() for the C interface: its value, or ``failed`` with the message kept for cgml_last_error(). */
template <class F>
auto guarded(F body, decltype(body()) failed) -> decltype(body()) {
    try {
        return body();
    }
    catch (std::exception& e) {
        cgmlSetLastError(e.what());
        return failed;
    }
}

} // namespace OpenMMCGML

#endif
