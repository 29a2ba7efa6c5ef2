#ifndef OPENMM_CGML_PAIR_TABLE_KERNELS_H_
#define OPENMM_CGML_PAIR_TABLE_KERNELS_H_
/*
 * openmm_cgml: what the compiled pair force shares with its device kernels (CGPairTableCommon.cpp).
 *
 * The force's implementation asks the Context's platform for a kernel named CalcCGPairTableForceKernel::Name().
 * A platform that has one registered (OpenCL or CUDA, once the library of device kernels is loaded) evaluates
 * the force there; every other platform runs the host kernel (CustomCPPForceImpl: positions to the host and
 * forces back).  Both evaluate the same cubic splines, built by PairTables.
 */
#include "CGPairTableForce.h"
#include "openmm/KernelImpl.h"
#include "openmm/System.h"
#include "openmm/internal/ContextImpl.h"
#include <string>
#include <vector>

namespace OpenMMCGML {

/** Every table's natural cubic spline as per-interval coefficients c0..c3 of the cubic in t = r/h - k. */
struct PairTables {
    int numTypes = 0, numIntervals = 0;
    double invH = 0;
    std::vector<int> pairTable;     // [ti * numTypes + tj]: the table's index, or -1 (no interaction)
    std::vector<double> coef;       // per table, per interval: c0, c1, c2, c3
    int numTables() const { return numIntervals > 0 ? (int) (coef.size() / (4 * numIntervals)) : 0; }
};

/** The force's tables as splines; ``numIntervals`` > 0 requires the same table length (an in-place update). */
PairTables buildPairTables(const CGPairTableForce& force, int numIntervals = 0);

/** The device kernel's interface (its implementations live in the library of device kernels). */
class CalcCGPairTableForceKernel : public OpenMM::KernelImpl {
public:
    static std::string Name() { return "CGML_CalcCGPairTableForce"; }
    CalcCGPairTableForceKernel(std::string name, const OpenMM::Platform& platform) : KernelImpl(name, platform) {}
    virtual void initialize(const OpenMM::System& system, const CGPairTableForce& force) = 0;
    virtual double execute(OpenMM::ContextImpl& context, bool includeForces, bool includeEnergy) = 0;
    virtual void copyParametersToContext(OpenMM::ContextImpl& context, const CGPairTableForce& force) = 0;
};

} // namespace OpenMMCGML

#endif
