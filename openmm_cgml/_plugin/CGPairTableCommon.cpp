/*
 * openmm_cgml: the compiled pair force's device kernel, written once against OpenMM's common compute API
 * (ComputeContext, NonbondedUtilities) and built for OpenCL (-DCGML_OPENCL, against libOpenMMOpenCL) or CUDA
 * (-DCGML_CUDA, against libOpenMMCUDA) into its own library, loaded after the plugin's main library.
 * cgml_register_device_kernels() registers the kernel factory with the platform, after which every Context made
 * on it evaluates CGPairTableForce on the device.
 *
 * The pair sum is one more interaction of the platform's nonbonded kernel: its neighbour list (tiles of 32 atoms,
 * rebuilt as the atoms move), its exclusions, its cutoff and periodic images, with the spline of each pair's type
 * pair evaluated in the inner loop; the coefficients are those the host kernel uses (buildPairTables).
 */
#include "CGPairTableKernels.h"
#include "CGPluginCommon.h"
#include "openmm/OpenMMException.h"
#include "openmm/KernelFactory.h"
#include "openmm/Platform.h"
#include "openmm/common/ComputeArray.h"
#include "openmm/common/ComputeContext.h"
#include "openmm/common/ComputeForceInfo.h"
#include "openmm/common/ComputeParameterInfo.h"
#include "openmm/common/ComputeVectorTypes.h"
#include "openmm/common/ContextSelector.h"
#include "openmm/common/NonbondedUtilities.h"
#include "openmm/internal/ContextImpl.h"
#if defined(CGML_OPENCL)
#include "openmm/opencl/OpenCLContext.h"
#include "openmm/opencl/OpenCLPlatform.h"
#define CGML_PLATFORM_NAME "OpenCL"
#elif defined(CGML_CUDA)
#include "openmm/cuda/CudaContext.h"
#include "openmm/cuda/CudaPlatform.h"
#define CGML_PLATFORM_NAME "CUDA"
#else
#error "build with -DCGML_OPENCL or -DCGML_CUDA"
#endif
#include <map>
#include <string>
#include <vector>

using namespace OpenMM;
using namespace std;

namespace OpenMMCGML {

/* Which particles the platform may swap when it reorders molecules for locality: same bead type, and the same
 * exclusions (the groups). */
class PairTableForceInfo : public ComputeForceInfo {
public:
    PairTableForceInfo(const CGPairTableForce& force) : force(force) {}
    bool areParticlesIdentical(int particle1, int particle2) {
        return force.getParticleType(particle1) == force.getParticleType(particle2);
    }
    int getNumParticleGroups() { return force.getNumExclusions(); }
    void getParticlesInGroup(int index, vector<int>& particles) {
        int a, b;
        force.getExclusionParticles(index, a, b);
        particles = {a, b};
    }
    bool areGroupsIdentical(int group1, int group2) { return true; }
private:
    const CGPairTableForce& force;
};

/* The interaction's code in the nonbonded kernel: r, r2, invR, isExcluded, tempEnergy and dEdR (the force over r,
 * -dU/dr / r) are the kernel's; TYPE1/TYPE2 are the two atoms' per-atom parameter, PAIRS and COEF its arguments. */
static const char* PAIR_SOURCE = R"(
#ifdef USE_CUTOFF
if (!isExcluded && r2 < CUTOFF_SQUARED) {
#else
if (!isExcluded) {
#endif
    int tab = PAIRS[TYPE1*NUM_TYPES+TYPE2];
    if (tab >= 0) {
        real x = r*INV_H;
        int idx = min((int) x, NUM_INTERVALS-1);
        real t = x-idx;
        real4 c = COEF[tab*NUM_INTERVALS+idx];
        tempEnergy += c.x+t*(c.y+t*(c.z+t*c.w));
        dEdR -= (c.y+t*(2*c.z+3*t*c.w))*INV_H*invR;
    }
}
)";

class CommonCalcCGPairTableForceKernel : public CalcCGPairTableForceKernel {
public:
    CommonCalcCGPairTableForceKernel(string name, const Platform& platform, ComputeContext& cc)
        : CalcCGPairTableForceKernel(name, platform), cc(cc) {}
    void initialize(const System& system, const CGPairTableForce& force) {
        ContextSelector selector(cc);
        int index = 0;
        while (index < system.getNumForces() && &system.getForce(index) != &force)
            index++;
        const string prefix = "cgmlpairs" + cc.intToString(index) + "_";
        const int n = force.getNumParticles();
        PairTables tables = buildPairTables(force);
        numIntervals = tables.numIntervals;
        vector<int> atomTypes(cc.getPaddedNumAtoms(), 0);
        vector<vector<int> > exclusions(n);
        for (int i = 0; i < n; i++) {
            atomTypes[i] = force.getParticleType(i);
            exclusions[i].push_back(i);
        }
        for (int e = 0; e < force.getNumExclusions(); e++) {
            int a, b;
            force.getExclusionParticles(e, a, b);
            exclusions[a].push_back(b);
            exclusions[b].push_back(a);
        }
        types.initialize<int>(cc, atomTypes.size(), "cgmlPairTypes");
        types.upload(atomTypes);
        pairs.initialize<int>(cc, tables.pairTable.size(), "cgmlPairTables");
        pairs.upload(tables.pairTable);
        const int numCoef = max(1, tables.numTables() * numIntervals);
        if (cc.getUseDoublePrecision())
            coef.initialize<mm_double4>(cc, numCoef, "cgmlPairCoefficients");
        else
            coef.initialize<mm_float4>(cc, numCoef, "cgmlPairCoefficients");
        uploadCoefficients(tables);
        map<string, string> replacements;
        replacements["TYPE1"] = prefix + "type1";
        replacements["TYPE2"] = prefix + "type2";
        replacements["PAIRS"] = prefix + "pairs";
        replacements["COEF"] = prefix + "coef";
        replacements["NUM_TYPES"] = cc.intToString(tables.numTypes);
        replacements["NUM_INTERVALS"] = cc.intToString(numIntervals);
        replacements["INV_H"] = cc.doubleToString(tables.invH);
        const string source = cc.replaceStrings(PAIR_SOURCE, replacements);
        NonbondedUtilities& nb = cc.getNonbondedUtilities();
        nb.addInteraction(true, force.usesPeriodicBoundaryConditions(), true, force.getCutoffDistance(), exclusions,
                          source, force.getForceGroup(), n > 2000);
        nb.addParameter(ComputeParameterInfo(types, prefix + "type", "int", 1));
        nb.addArgument(ComputeParameterInfo(pairs, prefix + "pairs", "int", 1));
        nb.addArgument(ComputeParameterInfo(coef, prefix + "coef", "real", 4));
        cc.addForce(new PairTableForceInfo(force));
    }
    double execute(ContextImpl& context, bool includeForces, bool includeEnergy) {
        return 0.0;   // the nonbonded kernel evaluates the interaction
    }
    void copyParametersToContext(ContextImpl& context, const CGPairTableForce& force) {
        ContextSelector selector(cc);
        PairTables tables = buildPairTables(force, numIntervals);
        if (tables.numTables() * numIntervals > (int) coef.getSize() || (int) tables.pairTable.size() != (int) pairs.getSize())
            throw OpenMMException("CGPairTableForce.updateParametersInContext: the type pairs cannot change");
        pairs.upload(tables.pairTable);
        uploadCoefficients(tables);
    }
private:
    void uploadCoefficients(const PairTables& tables) {
        const size_t m = coef.getSize();
        if (cc.getUseDoublePrecision()) {
            vector<mm_double4> v(m, mm_double4(0, 0, 0, 0));
            for (size_t k = 0; 4 * k < tables.coef.size(); k++)
                v[k] = mm_double4(tables.coef[4 * k], tables.coef[4 * k + 1], tables.coef[4 * k + 2], tables.coef[4 * k + 3]);
            coef.upload(v);
        }
        else {
            vector<mm_float4> v(m, mm_float4(0, 0, 0, 0));
            for (size_t k = 0; 4 * k < tables.coef.size(); k++)
                v[k] = mm_float4((float) tables.coef[4 * k], (float) tables.coef[4 * k + 1], (float) tables.coef[4 * k + 2],
                                 (float) tables.coef[4 * k + 3]);
            coef.upload(v);
        }
    }
    ComputeContext& cc;
    ComputeArray types, pairs, coef;
    int numIntervals = 0;
};

class DeviceKernelFactory : public KernelFactory {
public:
    KernelImpl* createKernelImpl(string name, const Platform& platform, ContextImpl& context) const {
#if defined(CGML_OPENCL)
        OpenCLPlatform::PlatformData& data = *static_cast<OpenCLPlatform::PlatformData*>(context.getPlatformData());
#else
        CudaPlatform::PlatformData& data = *static_cast<CudaPlatform::PlatformData*>(context.getPlatformData());
#endif
        if (data.contexts.size() > 1)
            throw OpenMMException("CGPairTableForce: the " CGML_PLATFORM_NAME " kernel runs on one device; give the "
                                  "Context one DeviceIndex");
        if (name == CalcCGPairTableForceKernel::Name())
            return new CommonCalcCGPairTableForceKernel(name, platform, *data.contexts[0]);
        throw OpenMMException("openmm_cgml: no kernel named " + name);
    }
};

} // namespace OpenMMCGML

using namespace OpenMMCGML;

extern "C" {

/** Register the device kernels with the platform (once); 0 on success, -1 with cgml_last_error(). */
int cgml_register_device_kernels() {
    return guarded([&] {
        Platform& platform = Platform::getPlatformByName(CGML_PLATFORM_NAME);
        if (!platform.supportsKernels(vector<string>{CalcCGPairTableForceKernel::Name()}))
            platform.registerKernelFactory(CalcCGPairTableForceKernel::Name(), new DeviceKernelFactory());
        return 0;
    }, -1);
}

const char* cgml_device_platform() { return CGML_PLATFORM_NAME; }

}
